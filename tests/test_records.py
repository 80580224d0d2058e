"""advisor.records: schema validation, tolerant reading, atomic appends, config identity."""
from __future__ import annotations

import json
import sys

import pytest

from advisor.contract import Config
from advisor.errors import AdvisorError
from advisor.records import (
    SCHEMA_VERSION, append_record, config_key, load_measurements, read_records, validate_record,
)
from tests.synthetic import make_record


def test_valid_records_pass():
    assert SCHEMA_VERSION == 1
    assert validate_record(make_record()) == []
    assert validate_record(make_record(status="oom")) == []
    errored = make_record(status="error", precision="fp32-tf32", offload="model")
    assert validate_record(errored) == []


def test_unknown_keys_are_allowed():
    rec = make_record()
    rec["future_field"] = {"x": 1}
    rec["config"]["future_knob"] = True
    rec["results"]["future_metric"] = 3.5
    assert validate_record(rec) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r.update(schema_version=2), "schema_version"),
    (lambda r: r.update(status="done"), "status"),
    (lambda r: r.update(weights="random"), "weights"),
    (lambda r: r.update(timestamp="yesterday"), "timestamp"),
    (lambda r: r.pop("gpu"), "gpu"),
    (lambda r: r["gpu"].pop("name"), "gpu.name"),
    (lambda r: r["config"].update(height=1000), "config.height"),
    (lambda r: r["config"].update(batch=0), "config.batch"),
    (lambda r: r["config"].update(batch=True), "config.batch"),
    (lambda r: r["config"].update(precision="bf8"), "config.precision"),
    (lambda r: r["config"].update(attention="sdpa"), "config.attention"),
    (lambda r: r["config"].update(offload="cpu"), "config.offload"),
    (lambda r: r["config"].update(compile="yes"), "config.compile"),
    (lambda r: r["config"].pop("caption_tokens"), "config.caption_tokens"),
    (lambda r: r.update(results=None), "results"),
    (lambda r: r["results"].pop("total_s"), "results.total_s"),
    (lambda r: r["results"].update(denoise_step_s="fast"), "results.denoise_step_s"),
    (lambda r: r["results"].update(vae_decode_s=0), "results.vae_decode_s"),
    (lambda r: r["results"].update(mfu="high"), "results.mfu"),
    (lambda r: r["results"].update(total_s=1e-300), "results.total_s: expected 1e-06..1e+06"),
    (lambda r: r["results"].update(denoise_step_s=1e300), "results.denoise_step_s"),
    (lambda r: r["results"].update(img_per_s=1e12), "results.img_per_s"),
    (lambda r: r["results"].update(peak_allocated_mb=-5), "results.peak_allocated_mb"),
    (lambda r: r["results"].update(nvml_peak_used_mb=1e30), "results.nvml_peak_used_mb"),
    (lambda r: r["results"].update(mfu=3.0), "results.mfu"),
    (lambda r: r["results"].update(nvml_peak_used_mb="lots"), "results.nvml_peak_used_mb"),
    (lambda r: r["results"].update(measured_steps=2.5), "results.measured_steps"),
    (lambda r: r.update(architecture="huge"), "architecture"),
    (lambda r: r.update(grid=3), "grid"),
    (lambda r: r["config"].update(vae="tiled"), "config.vae"),
    (lambda r: r["config"].update(offload="groups"), "config.offload"),
    (lambda r: r["config"].update(memory_cap_gib=0), "config.memory_cap_gib"),
    (lambda r: r["config"].update(memory_cap_gib="24"), "config.memory_cap_gib"),
    (lambda r: r.update(failed_stage="denoise"), "failed_stage: expected null when status is ok"),
    (lambda r: r.update(status="oom", results=None, failed_stage="decode"), "failed_stage"),
    (lambda r: r["results"].update(min_cap_gib="low"), "results.min_cap_gib"),
    (lambda r: r["results"].update(cap_trials="x"), "results.cap_trials"),
    (lambda r: r["results"].update(cap_trials=[[]]), "results.cap_trials[0]"),
    (lambda r: r["results"].update(cap_trials=[{"cap_gib": 20, "status": "maybe",
                                                "failed_stage": None}]),
     "results.cap_trials[0].status"),
    (lambda r: r["results"].update(cap_trials=[{"cap_gib": 20, "status": "oom",
                                                "failed_stage": "vae"}]),
     "results.cap_trials[0].failed_stage"),
    (lambda r: r["results"].update(cap_trials=[{"cap_gib": 20, "status": "ok"}]),
     "results.cap_trials[0].failed_stage: missing"),
])
def test_invalid_records_name_the_field(mutate, expected):
    rec = make_record()
    mutate(rec)
    problems = validate_record(rec)
    assert problems and any(p.startswith(expected) for p in problems), problems


def test_records_without_the_newer_config_fields_stay_valid_and_keep_their_key():
    old = make_record()
    assert "vae" not in old["config"] and "memory_cap_gib" not in old["config"]
    assert validate_record(old) == []
    new = Config.from_record(old["config"]).record()
    assert new["vae"] == "full" and new["memory_cap_gib"] is None
    assert config_key(old["config"]) == config_key(new)
    assert config_key(new) != config_key({**new, "vae": "tiling"})
    assert config_key(new) != config_key({**new, "memory_cap_gib": 23.5})
    assert config_key({**new, "memory_cap_gib": 23}) == config_key({**new, "memory_cap_gib": 23.0})


def test_capped_search_and_failure_records_are_valid():
    searched = make_record(vae="tiling+slicing", offload="group", memory_cap_gib=21.75)
    searched["results"].update(min_cap_gib=21.75, cap_trials=[
        {"cap_gib": 139.8, "status": "ok", "failed_stage": None},
        {"cap_gib": 21.5, "status": "oom", "failed_stage": "vae_decode"},
        {"cap_gib": 21.75, "status": "ok", "failed_stage": None}])
    assert validate_record(searched) == []
    for stage in ("load", "text_encode", "denoise", "vae_decode", None):
        failed = make_record(status="oom", memory_cap_gib=23.5)
        failed["failed_stage"] = stage
        assert validate_record(failed) == []
    assert validate_record({**make_record(), "failed_stage": None}) == []


def test_memory_figures_may_be_null_on_cpu_runs():
    rec = make_record()
    rec["architecture"] = "tiny"
    rec["gpu"].update(name="cpu", catalog_id=None, compute_capability=None)
    rec["results"].update(peak_allocated_mb=None, peak_reserved_mb=None, nvml_peak_used_mb=None)
    assert validate_record(rec) == []


def test_non_ok_record_must_not_carry_results():
    rec = make_record(status="oom")
    rec["results"] = {"total_s": 1.0}
    assert any(p.startswith("results") for p in validate_record(rec))
    assert validate_record([1, 2]) == ["expected a JSON object, got list"]


def test_read_records_reports_and_skips_bad_lines(tmp_path):
    path = tmp_path / "h100-sxm-80gb.jsonl"
    bad = make_record()
    bad["config"]["width"] = 1000
    lines = [json.dumps(make_record()), "{not json", "", json.dumps(bad),
             json.dumps(make_record(height=512))]
    path.write_text("\n".join(lines) + "\n")
    records, problems = read_records(path)
    assert [r["config"]["height"] for r in records] == [1024, 512]
    assert [r["_source"] for r in records] == ["h100-sxm-80gb.jsonl:1", "h100-sxm-80gb.jsonl:5"]
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}:2: corrupt JSON")
    assert problems[1].startswith(f"{path}:4: config.width")


def test_load_measurements_reads_every_jsonl(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(make_record()) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(make_record(gpu="h200-sxm-141gb")) + "\n[]\n")
    (tmp_path / "README.md").write_text("not records")
    records, problems = load_measurements(tmp_path)
    assert [r["_source"] for r in records] == ["a.jsonl:1", "b.jsonl:1"]
    assert problems == [f"{tmp_path / 'b.jsonl'}:2: expected a JSON object, got list"]


def test_load_measurements_missing_folder_is_an_advisor_error(tmp_path):
    with pytest.raises(AdvisorError, match="measurements folder not found"):
        load_measurements(tmp_path / "nowhere")


def test_append_record_validates_and_round_trips(tmp_path):
    path = tmp_path / "sub" / "gpu.jsonl"
    rec = make_record()
    append_record(path, rec)
    rec2 = make_record(height=768)
    rec2["_source"] = "elsewhere:1"
    append_record(path, rec2)
    records, problems = read_records(path)
    assert problems == []
    assert [r["config"]["height"] for r in records] == [1024, 768]
    assert "_source" not in path.read_text()
    bad = make_record()
    bad["config"]["batch"] = 0
    with pytest.raises(AdvisorError, match="config.batch"):
        append_record(path, bad)
    assert len(path.read_text().splitlines()) == 2


def test_config_key_is_canonical():
    a = make_record()["config"]
    b = dict(reversed(list(a.items())))
    b["guidance_scale"] = 0
    b["unrelated"] = "ignored"
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({**a, "batch": 2})
    with pytest.raises(AdvisorError, match="missing"):
        config_key({"height": 512})


def test_records_module_needs_no_torch_or_sklearn():
    import subprocess
    code = ("import sys, advisor.records; "
            "bad = [m for m in ('torch', 'sklearn', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_machine_identity_and_profile_are_optional_and_type_checked():
    from tests.synthetic import make_record

    record = make_record()
    assert validate_record(record) == []  # records before them stay valid
    record["gpu"].update(uuid="GPU-1234", sm_clock_max_mhz=1980, memory_clock_max_mhz=3201)
    record["host"]["fingerprint"] = "0123456789ab"
    record["results"]["profile"] = {"denoise_step": {"wall_s": 0.15, "busy_s": 0.14,
                                                     "kernels": 2300, "class_s": {}}}
    assert validate_record(record) == []
    record["gpu"]["sm_clock_max_mhz"] = "fast"
    record["results"]["profile"] = [1]
    assert validate_record(record) == [
        "gpu.sm_clock_max_mhz: expected a number or null, got 'fast'",
        "results.profile: expected an object or null, got [1]"]
