"""The validation report shipped beside the measurements (advisor.shipped): used for the exact
inputs and code it was computed from and for nothing else, and current for the shipped data."""
from __future__ import annotations

import gzip
import json

import pytest

from advisor import CATALOG_PATH
from advisor import shipped
from advisor.cache import load_models, validation_of
from advisor.cli import main
from advisor.published import load_published
from advisor.shipped import read_shipped, report_key, report_modules, write_shipped
from tests.synthetic import synthetic_records
from tests.test_fit import SMALL_GRID, _write_data


@pytest.fixture
def small(tmp_path, monkeypatch):
    """Models of a small synthetic data set, a shipped-report path of this test, and a
    validation_report that records its calls instead of computing."""
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    monkeypatch.setattr(shipped, "SHIPPED_REPORT", tmp_path / "shipped" / "report.json.gz")
    computed = []

    def fake_report(records, *args, **kwargs):
        computed.append(len(records))
        return {"computed_here": True}

    monkeypatch.setattr("advisor.validation.validation_report", fake_report)
    models = lambda name="cache": load_models(data, CATALOG_PATH, tmp_path / name)  # noqa: E731
    return models, data, computed


def test_the_shipped_report_is_the_shipped_datas_for_this_model_code():
    """Fails after a change to the shipped data or to a module a validation runs until the
    report is computed again: `advisor validate --ship`, then docs/validation.md's figures."""
    models = load_models()
    report = read_shipped(report_key(models, load_published()))
    assert report is not None, ("data/validation/report.json.gz is not the report of the "
                                "shipped data and this model code: run `advisor validate "
                                "--ship` and update docs/validation.md from it")
    assert report["data"]["ok"] == sum(r["status"] == "ok" for r in models.records)
    assert "for these exact data and model code" in report["shipped"]


def test_validation_of_takes_the_shipped_report_of_its_inputs_only(small):
    models, data, computed = small
    report = {"metrics": {}, "latency_mape": {"kfold": 1.0}}
    write_shipped(report, report_key(models(), load_published()))
    found = validation_of(models())
    assert computed == [] and found["latency_mape"] == {"kfold": 1.0}
    assert "computed" in found["shipped"] and found["model_version"] == models().model_version
    # kept beside the model cache from then on
    assert next((data.parent / "cache").glob("*.validation.json"))
    # other records: the shipped report is not theirs, so it is computed
    (data / "extra.jsonl").write_text(json.dumps(synthetic_records(grid=SMALL_GRID[:1])[0])
                                      + "\n")
    assert validation_of(models("other-cache")) == {"computed_here": True,
                                                    "model_version": models().model_version}
    assert len(computed) == 1


def test_recompute_and_compute_false(small):
    models, _, computed = small
    assert validation_of(models(), compute=False) is None and computed == []
    write_shipped({"metrics": {}}, report_key(models(), load_published()))
    assert validation_of(models(), compute=False)["shipped"]
    assert validation_of(models(), recompute=True)["computed_here"] and len(computed) == 1


@pytest.mark.parametrize("content", [
    b"not gzip at all",
    gzip.compress(b'{"key": "x"}' * 1000)[:30] + b"\xff" * 10 + gzip.compress(b"{}" * 1000)[40:],
    gzip.compress(b"{not json"),
    gzip.compress(b"[1, 2]"),
    gzip.compress(json.dumps({"key": "another", "computed": {}, "report": {}}).encode()),
    gzip.compress(b"[" * 100_000 + b"]" * 100_000),
], ids=["not-gzip", "bad-deflate", "not-json", "not-a-mapping", "other-key", "deep-nesting"])
def test_a_damaged_or_foreign_shipped_file_is_a_miss(small, content):
    models, _, computed = small
    shipped.SHIPPED_REPORT.parent.mkdir(parents=True)
    shipped.SHIPPED_REPORT.write_bytes(content)
    assert read_shipped(report_key(models(), load_published())) is None
    assert validation_of(models())["computed_here"] and len(computed) == 1


def test_the_key_follows_the_inputs_and_the_model_code(small, monkeypatch):
    models, _, _ = small
    m, published = models(), load_published()
    key = report_key(m, published)
    assert report_key(models(), published) == key  # a cached load keys as the fit did
    assert report_key(m, published[1:]) != key
    m.records[0] = {**m.records[0], "results": {**m.records[0]["results"], "total_s": 9.0}}
    assert report_key(m, published) != key
    modules = report_modules()
    assert {"advisor.validation", "advisor.calibration", "advisor.fit", "advisor.grouped",
            "advisor.estimators", "advisor.models", "advisor.features"} <= set(modules)
    # the planner, the commands and the dashboard do not change a validation
    assert not {"advisor.plan", "advisor.search", "advisor.cli", "advisor.cache"} & set(modules)
    sources = shipped._report_sources()
    edited = tuple((name, text + b"# edited\n" if name.endswith("grouped.py") else text)
                   for name, text in sources)
    monkeypatch.setattr(shipped, "_report_sources", lambda: edited)
    assert report_key(models(), published) != key


def test_validate_ship_writes_the_report_a_first_validate_reads(small, tmp_path, capsys):
    _, data, computed = small
    args = ["validate", "--data", str(data), "--format", "json", "--cache-dir"]
    assert main([*args, str(tmp_path / "one"), "--ship"]) == 0 and len(computed) == 1
    assert "validation report shipped" in capsys.readouterr().err
    doc = json.loads(gzip.decompress(shipped.SHIPPED_REPORT.read_bytes()))
    assert doc["report"] == {"computed_here": True} and {"date", "python"} <= set(doc["computed"])
    assert main([*args, str(tmp_path / "two")]) == 0 and len(computed) == 1
    assert "for these exact data and model code" in json.loads(capsys.readouterr().out)["shipped"]
