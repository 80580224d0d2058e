"""advisor.export: plan files round-trip, carry provenance, and re-check against current data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from advisor.catalog import load_catalog
from advisor.cli import main
from advisor.contract import Setting
from advisor.errors import AdvisorError
from advisor.export import check_plan, load_plan, plan_document, provenance, save_plan
from advisor.fileio import sha256_file
from advisor.plan import recommend
from advisor.request import Request
from tests.fake_models import FakeModels
from tests.test_plan import SIMPLE, request

CATALOG = load_catalog()


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "measurements"
    folder.mkdir()
    (folder / "h100-sxm-80gb.jsonl").write_text('{"a": 1}\n')
    return folder


@pytest.fixture
def saved(tmp_path, data_dir):
    models = FakeModels(CATALOG)
    plan = recommend(request(**{"demand.images_per_s": 6.0}), models, CATALOG)
    path = tmp_path / "plan.yaml"
    save_plan(plan, path, provenance(models, CATALOG, data_dir))
    return path, plan


def test_round_trip(saved):
    path, plan = saved
    doc = load_plan(path)
    assert doc["request"] == plan.request.with_changes(source=doc["request"].source)
    results = yaml.safe_load(yaml.safe_dump(plan_document(plan, {})["results"]))
    assert doc["results"]["options"] == results["options"]
    assert doc["results"]["options"][0]["setting"] == plan.best().setting.as_dict()
    assert doc["results"]["frontier"][0] == doc["results"]["options"][0]
    assert doc["assumptions"] == plan.assumptions
    assert "&id" not in path.read_text()  # no YAML anchors: each section stands alone
    lossy = doc["results"]["lossy_alternatives"]
    assert lossy == results["lossy_alternatives"]
    assert [a["precision"] for a in lossy] == ["fp8", "fp8-wo", "int8-wo"]
    assert all(a["caveat"].startswith("lossy: ") and a["summary"] for a in lossy)


def test_provenance(saved, data_dir):
    doc = load_plan(saved[0])
    prov = doc["provenance"]
    assert prov["catalog"] == {"path": "gpu_catalog.yaml", "sha256": CATALOG.sha256}
    measured = data_dir / "h100-sxm-80gb.jsonl"
    assert prov["measurements"] == [{"file": str(measured), "sha256": sha256_file(measured)}]
    assert prov["model"]["version"] == "fake-law-1"
    assert prov["model"]["validation"] == {"latency_mape": 5.0, "memory_mape": 3.0}
    assert {"advisor", "python", "numpy", "scipy", "scikit-learn", "pyyaml"} <= set(
        prov["software"])


def test_document_is_plain_data(saved):
    _, plan = saved
    doc = plan_document(plan, {"x": 1})
    assert json.loads(json.dumps(doc)) == doc


def test_check_holds_when_nothing_changed(saved, data_dir):
    report = check_plan(saved[0], FakeModels(CATALOG), CATALOG, data_dir)
    assert report["holds"] and report["problems"] == [] and report["changes"] == []
    assert report["best_now"] == report["option"]


def test_a_plan_saved_before_the_results_were_typed_is_still_checked(data_dir, monkeypatch):
    """tests/data/plan-2026-12-07.yaml: written by the planner of 2026-12-07, when options were
    dicts (and latencies had no endpoint overhead, as here); a plan file of that format must
    load and re-check."""
    for module in ("advisor.search", "advisor.plan"):
        monkeypatch.setattr(f"{module}.overhead_s", lambda gpu, h, w: (0.0, "none"))
    path = Path(__file__).parent / "data" / "plan-2026-12-07.yaml"
    saved = load_plan(path)["results"]["options"]
    report = check_plan(path, FakeModels(CATALOG, transferred={"l40s-48gb"}), CATALOG, data_dir)
    assert report["option"] == {"gpu": saved[0]["gpu"],
                                "setting": Setting(**saved[0]["setting"]).as_dict(),
                                "max_batch": saved[0]["max_batch"],
                                "serving_gpus": saved[0]["fleet"]["serving_gpus"]}
    assert report["holds"] and report["best_now"] == report["option"]
    assert not any(change.startswith("p95 with") for change in report["changes"])


def test_check_fails_when_the_gpus_got_slower(saved, data_dir):
    slower = FakeModels(CATALOG, speed={"h100-sxm-80gb": 1.6})
    slower.model_version = "fake-law-2"
    report = check_plan(saved[0], slower, CATALOG, data_dir)
    assert not report["holds"]
    assert any("above the 6 s SLO" in p for p in report["problems"])
    assert "fitted model version fake-law-1 -> fake-law-2" in report["changes"]
    assert any(c.startswith("the best option now is") for c in report["changes"])


def test_check_reports_changed_inputs(saved, data_dir):
    (data_dir / "h100-sxm-80gb.jsonl").write_text('{"a": 2}\n')
    (data_dir / "l40s-48gb.jsonl").write_text("\n")
    changes = check_plan(saved[0], FakeModels(CATALOG), CATALOG, data_dir)["changes"]
    assert any(c.startswith("measurement file changed: ") for c in changes)
    assert any(c.startswith("measurement file added: ") for c in changes)


def test_check_with_a_tighter_budget_no_longer_holds(saved, data_dir, tmp_path):
    doc = yaml.safe_load(saved[0].read_text())
    doc["inputs"]["request"]["constraints"]["max_usd_per_month"] = 100.0
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(doc))
    report = check_plan(edited, FakeModels(CATALOG), CATALOG, data_dir)
    assert not report["holds"] and any("budget" in p for p in report["problems"])


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("kind"), "field 'kind': expected 'zimage-advisor-plan'"),
    (lambda d: d.update(format=7), "field 'format': expected 1 (the plan format this advisor "
     "writes), found number 7"),
    (lambda d: d["inputs"].pop("request"), "field 'inputs.request': expected the planning"),
    (lambda d: d["inputs"]["request"]["demand"].update(peak_factor="x"),
     "inputs.request: field 'demand.peak_factor': expected a number >= 1"),
    (lambda d: d["results"].update(options="none"), "field 'results.options': expected a list"),
    (lambda d: d["results"]["options"][0]["fleet"].update(serving_gpus=0),
     "field 'results.options[0].fleet.serving_gpus': expected an integer 1..1024, found number 0"),
    (lambda d: d["results"]["options"][0].pop("setting"),
     "field 'results.options[0].setting': expected a value, found nothing (missing)"),
    # every field a plan check reads is checked like a request's (no TypeError, no KeyError)
    (lambda d: d["results"]["options"][0]["latency"].update(p95_s="fast"),
     "field 'results.options[0].latency.p95_s': expected a number >= 0, found string 'fast'"),
    (lambda d: d["results"]["options"][0]["latency"].update(p95_s=None),
     "field 'results.options[0].latency.p95_s': expected a number >= 0, found nothing (null)"),
    (lambda d: d["results"]["options"][0].update(max_batch=0),
     "field 'results.options[0].max_batch': expected one of the request's batch sizes"),
    (lambda d: d["results"]["options"][0]["setting"].update(compile="maybe"),
     "field 'results.options[0].setting.compile': expected true or false, found string"),
    (lambda d: d["results"]["options"][0]["setting"].update(offload="disk"),
     "field 'results.options[0].setting.offload': expected one of none, model, sequential"),
    (lambda d: d["results"]["options"][0].update(gpu=5),
     "field 'results.options[0].gpu': expected a catalog GPU id, found number 5"),
    (lambda d: d["results"]["options"][0].update(cost=None),
     "field 'results.options[0].cost': expected a mapping, found nothing (null)"),
    (lambda d: d["results"]["options"][0]["cost"].update(usd_per_month=[1]),
     "field 'results.options[0].cost.usd_per_month': expected a number >= 0, found the list"),
    (lambda d: d.update(provenance=[1]), "field 'provenance': expected a mapping"),
    (lambda d: d["provenance"].update(measurements=[{"file": 1}]),
     "field 'provenance.measurements[0]': expected a mapping with text 'file' and 'sha256'"),
])
def test_bad_plan_files_name_the_field(saved, tmp_path, mutate, message):
    doc = yaml.safe_load(saved[0].read_text())
    mutate(doc)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(AdvisorError) as err:
        load_plan(bad)
    assert str(bad) in str(err.value) and message in str(err.value)


def test_a_plan_whose_gpu_left_the_catalog_no_longer_holds(saved, tmp_path, data_dir):
    doc = yaml.safe_load(saved[0].read_text())
    doc["results"]["options"][0]["gpu"] = "h999-gone"
    edited = tmp_path / "gone.yaml"
    edited.write_text(yaml.safe_dump(doc))
    report = check_plan(edited, FakeModels(CATALOG), CATALOG, data_dir)
    assert not report["holds"] and "unknown GPU id 'h999-gone'" in report["problems"][0]


def test_unsafe_yaml_is_refused(tmp_path):
    bad = tmp_path / "evil.yaml"
    bad.write_text("kind: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(AdvisorError, match="invalid YAML"):
        load_plan(bad)


@pytest.fixture
def fake_models(monkeypatch):
    import advisor.cache

    monkeypatch.setattr(advisor.cache, "load_models", lambda *a, **k: FakeModels(CATALOG))


def test_cli_out_then_check(fake_models, tmp_path, data_dir, capsys):
    req = tmp_path / "req.yaml"
    req.write_text(yaml.safe_dump({**SIMPLE, "demand": {"images_per_s": 6.0}}))
    out = tmp_path / "plan.yaml"
    assert main(["recommend", "--request", str(req), "--out", str(out),
                 "--data", str(data_dir)]) == 0
    assert f"Plan saved to {out}" in capsys.readouterr().out
    assert load_plan(out)["request"] == Request.from_yaml(req).with_changes(
        source=f"{out}: inputs.request")
    assert main(["recommend", "--plan", str(out), "--check", "--data", str(data_dir)]) == 0
    assert "HOLDS" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text())
    doc["results"]["options"][0]["fleet"]["serving_gpus"] = 1
    out.write_text(yaml.safe_dump(doc))
    assert main(["recommend", "--plan", str(out), "--check", "--format", "json",
                 "--data", str(data_dir)]) == 1
    assert json.loads(capsys.readouterr().out)["holds"] is False
    assert main(["recommend", "--check", "--data", str(data_dir)]) == 2
    assert "--plan and --check go together" in capsys.readouterr().err
