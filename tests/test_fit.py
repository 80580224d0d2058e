"""Fitted models: recovery of a known law, estimator conventions, predictions and their sources,
OOM boundaries, the validation report, the cache, and the fit/validate/predict commands."""
from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone

from advisor import CATALOG_PATH
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.estimators import LatencyRegressor, MemoryRegressor
from advisor.features import LATENCY_STAGES, make_row
from advisor.fit import fit_models, load_models, targets, usable
from advisor.validation import validation_report
from tests.synthetic import (
    LAW, gpu_specs, law_latency, law_memory, make_record, synthetic_records,
)

H100, H200 = "h100-sxm-80gb", "h200-sxm-141gb"
SMALL_GRID = [dict(height=h, width=w, batch=b)
              for h, w in ((512, 512), (768, 768), (1024, 1024), (1024, 768), (1536, 1536))
              for b in (1, 4)]


@pytest.fixture(scope="module")
def specs():
    return gpu_specs()


def _with_sources(records, name="syn.jsonl"):
    for i, r in enumerate(records, start=1):
        r["_source"] = f"{name}:{i}"
    return records


@pytest.fixture(scope="module")
def exact(specs):
    """Estimators fitted on noise-free records of the standard-like grid on two GPUs."""
    rows, ok, _ = usable(synthetic_records(noise=0.0), specs)
    assert all(r["status"] == "ok" for r in ok)
    y = targets(ok)
    return (LatencyRegressor().fit(rows, y["latency"]),
            MemoryRegressor().fit(rows, y["memory"], stage_peaks=y["stage_peaks"],
                                  reserved=y["reserved"]))


@pytest.fixture(scope="module")
def models(specs):
    return fit_models(_with_sources(synthetic_records(noise=0.01)), specs)


def _write_data(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    for gpu in sorted({r["gpu"]["catalog_id"] for r in records}):
        lines = [json.dumps(r) for r in records if r["gpu"]["catalog_id"] == gpu]
        (folder / f"{gpu}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


# ------------------------------------------------------------------------------ the known law


@pytest.mark.parametrize("gpu", [H100, H200])
@pytest.mark.parametrize("shape", [(1792, 1792, 1), (640, 1152, 4), (1024, 1024, 2)])
def test_latency_and_memory_recover_the_law_on_unseen_shapes(exact, specs, gpu, shape):
    latency, memory = exact
    row = make_row(specs[gpu], *shape)
    law = law_latency(row)
    predicted = latency.predict([row])[0]
    for i, stage in enumerate(LATENCY_STAGES):
        assert predicted[i] == pytest.approx(law[stage], rel=0.01), stage
    allocated, nvml = memory.predict([row])[0]
    assert allocated == pytest.approx(law_memory(row)["allocated"], rel=0.002)
    assert nvml == pytest.approx(law_memory(row)["nvml"], rel=0.002)


def test_fitted_efficiencies_match_the_law(exact, specs):
    coef = exact[0].predictor_.efficiencies(make_row(specs[H100], 1024, 1024))["denoise_step"]
    assert coef["matmul"] == pytest.approx(LAW["denoise_step"][1], rel=0.05)
    assert coef["attention"] == pytest.approx(LAW["denoise_step"][2], rel=0.05)
    assert coef["hbm"] == pytest.approx(LAW["denoise_step"][3], rel=0.25)
    # CFG's masked attention (the two captions differ in length) runs slower than plain.
    assert coef["cfg_attention"] == pytest.approx(LAW["denoise_step"][5], rel=0.05)


def test_small_steps_are_bounded_by_the_fitted_floor(exact, specs):
    latency = exact[0]
    assert latency.predictor_.floors["denoise_step"] == pytest.approx(
        LAW["denoise_step_floor"], rel=1e-6)
    for gpu in (H100, H200):
        for precision in ("bf16", "fp16"):
            row = make_row(specs[gpu], 512, 512, precision=precision)
            law = law_latency(row)["denoise_step"]
            assert law == LAW["denoise_step_floor"]  # the law's GPU time is below it here
            assert latency.predict([row])[0][1] == pytest.approx(law, rel=1e-6)
    # A slower GPU's own time at that shape is above the floor: the linear terms answer.
    slow = make_row(specs["a100-sxm-80gb"], 512, 512)
    assert law_latency(slow)["denoise_step"] > 1.5 * LAW["denoise_step_floor"]
    assert latency.predict([slow])[0][1] == pytest.approx(law_latency(slow)["denoise_step"],
                                                           rel=0.05)


def test_no_floor_without_small_steps_that_show_one(specs):
    grid = [g for g in SMALL_GRID if g["height"] >= 1024]
    rows, ok, _ = usable(synthetic_records(grid=grid, noise=0.01), specs)
    latency = LatencyRegressor().fit(rows, targets(ok)["latency"])
    assert latency.predictor_.floors["denoise_step"] == 0.0
    small = make_row(specs[H100], 512, 512)
    assert latency.predict([small])[0][1] < LAW["denoise_step_floor"]


@pytest.mark.parametrize("rounds, tolerance", [(None, 0.01), (0, None)])
def test_one_unsettled_record_does_not_drag_its_setting(specs, monkeypatch, rounds, tolerance):
    """A step timed 60% slow (a warm-up left in the record) barely moves the fp16 group's fit
    with the robust refits; without them (rounds=0) its neighbour misses by more than 1%."""
    import advisor.estimators as estimators

    if rounds is not None:
        monkeypatch.setattr(estimators, "ROBUST_ROUNDS", rounds)
    records = synthetic_records(noise=0.0)
    slow = next(r for r in records if r["gpu"]["catalog_id"] == H100 and r["status"] == "ok"
                and r["config"]["precision"] == "fp16" and r["config"]["height"] == 1024
                and r["config"]["batch"] == 1)
    res = slow["results"]
    extra = 0.6 * res["denoise_step_s"] * slow["config"]["steps"]
    res["denoise_step_s"] *= 1.6
    res["denoise_s"] += extra
    res["total_s"] += extra
    rows, ok, _ = usable(records, specs)
    latency = LatencyRegressor().fit(rows, targets(ok)["latency"])
    neighbour = make_row(specs[H100], 1024, 1024, 4, precision="fp16")
    error = abs(latency.predict([neighbour])[0][1] / law_latency(neighbour)["denoise_step"] - 1)
    assert error < 0.01 if tolerance else error > 0.01


def test_attention_under_tf32_runs_at_the_fp32_rate(specs):
    tf32 = make_row(specs[H100], 1024, 1024, precision="fp32-tf32")
    assert tf32["attention_tflops"] == specs[H100].tflops["fp32"] < tf32["tflops"]
    bf16 = make_row(specs[H100], 1024, 1024)
    assert bf16["attention_tflops"] == bf16["tflops"]


def test_latency_transfers_to_an_unprobed_gpu(exact, specs):
    row = make_row(specs["a100-sxm-80gb"], 1024, 1024, 2)
    predicted = exact[0].predict([row])[0]
    law = law_latency(row)
    assert predicted[1] == pytest.approx(law["denoise_step"], rel=0.05)


def test_estimators_follow_sklearn_conventions(exact, specs):
    latency, memory = exact
    for est in (latency, memory):
        fresh = clone(est)
        assert fresh.get_params() == est.get_params()
        assert not hasattr(fresh, "predictor_")
        restored = pickle.loads(pickle.dumps(est))
        rows = [make_row(specs[H100], 768, 1344, 2)]
        np.testing.assert_allclose(restored.predict(rows), est.predict(rows))
    assert LatencyRegressor(prior_strength=3.0).set_params(per_gpu=False).get_params() == {
        "prior_strength": 3.0, "per_gpu": False}


# ------------------------------------------------------------------------------ predictions


def test_prediction_keys_and_sources(models):
    fitted = models.predict(H100, 1024, 768, batch=2, steps=8)
    for key in ("latency_s", "latency_interval_s", "images_per_s", "peak_memory_gb",
                "memory_interval_gb", "fits", "memory_margin_gb", "source", "mfu",
                "model_version"):
        assert key in fitted
    stages = fitted["latency_s"]
    assert set(stages) == {"text_encode", "denoise", "vae_decode", "other", "total"}
    assert stages["total"] == pytest.approx(
        stages["text_encode"] + stages["denoise"] + stages["vae_decode"] + stages["other"])
    assert fitted["source"] == "fitted"
    lo, hi = fitted["latency_interval_s"]
    assert lo <= fitted["latency_s"]["total"] <= hi
    assert fitted["images_per_s"] == pytest.approx(2 / fitted["latency_s"]["total"])
    assert 0 < fitted["mfu"] < 1
    json.dumps(fitted)  # plain JSON types only

    measured = models.predict(H100, 1024, 1024)
    assert measured["source"] == "measured"
    record = next(r for r in models.records if r["gpu"]["catalog_id"] == H100
                  and r["config"]["height"] == r["config"]["width"] == 1024
                  and r["config"]["batch"] == 1 and r["config"]["precision"] == "bf16"
                  and r["config"]["attention"] == "native" and not r["config"]["compile"]
                  and r["config"]["offload"] == "none" and r["config"]["guidance_scale"] == 0
                  and r["config"]["caption_tokens"] == 64)
    assert measured["latency_s"]["total"] == pytest.approx(record["results"]["total_s"])
    assert record["_source"] in measured["source_detail"]
    assert measured["power_w"] == record["results"]["power_w"]
    assert fitted["power_w"] is not None and fitted["energy_j_per_image"] > 0

    transferred = models.predict("a100-sxm-80gb", 1024, 768, batch=2, steps=8)
    assert transferred["source"] == "transferred"
    width = lambda p: p["latency_interval_s"][1] / p["latency_interval_s"][0]
    assert width(transferred) > width(fitted)
    assert "Ampere" in transferred["interval_basis"]["latency"]
    assert transferred["power_w"] is None


def test_a_setting_probed_at_one_shape_gets_wider_intervals_elsewhere(specs):
    grid = SMALL_GRID + [dict(height=1024, width=1024, batch=b, compile=True) for b in (1, 4)]
    models = fit_models(_with_sources(synthetic_records(grid=grid, noise=0.01)), specs,
                        calibrate=False)
    width = lambda p: p["latency_interval_s"][1] / p["latency_interval_s"][0]
    compiled = models.predict(H100, 768, 768, batch=2, compile=True)
    assert "probed at one shape only" in compiled["interval_basis"]["latency"]
    assert width(compiled) > width(models.predict(H100, 768, 768, batch=2))
    same_shape = models.predict(H100, 1024, 1024, batch=2, compile=True)
    assert "one shape" not in same_shape["interval_basis"]["latency"]


def test_predict_many_matches_predict(models):
    configs = [dict(gpu_id=H200, height=h, width=w, batch=b)
               for h, w, b in ((512, 512, 1), (1536, 1024, 3), (2048, 2048, 2))]
    many = models.predict_many(configs)
    for config, result in zip(configs, many):
        single = models.predict(**config)
        assert result["latency_s"] == single["latency_s"]
        assert result["peak_memory_gb"] == single["peak_memory_gb"]


def test_more_work_takes_longer_and_more_memory(models):
    small = models.predict(H100, 1024, 1024, batch=2)
    large = models.predict(H100, 1024, 1024, batch=8)
    assert large["latency_s"]["total"] > small["latency_s"]["total"]
    assert large["peak_memory_gb"] > small["peak_memory_gb"]
    cfg = models.predict(H100, 1024, 1024, batch=2, cfg=True)
    assert cfg["latency_s"]["denoise"] > 1.8 * small["latency_s"]["denoise"]


def test_measured_oom_makes_that_shape_and_larger_not_fit(specs):
    records = synthetic_records(grid=SMALL_GRID, noise=0.01)
    records.append(make_record(gpu=H100, status="oom", height=1536, width=1536, batch=8))
    models = fit_models(_with_sources(records), specs, calibrate=False)
    for batch in (8, 16):
        p = models.predict(H100, 1536, 1536, batch=batch)
        assert p["fits"] is False and "out of memory" in p["fits_reason"]
        assert "syn.jsonl" in p["fits_reason"]
    assert models.predict(H100, 2048, 2048, batch=8)["fits"] is False
    assert models.predict(H100, 1536, 1536, batch=4)["fits"] is True
    assert models.predict(H100, 1536, 1536, batch=8, precision="fp16")["fits"] is True
    assert models.predict(H200, 1536, 1536, batch=8)["fits"] is True


@pytest.mark.parametrize("offload", ["none", "model", "sequential"])
def test_memory_predictions_never_fall_below_the_resident_weights(models, specs, offload):
    from advisor.features import MEMORY_STAGES, MIB, handoff_mib

    for shape in ((256, 256, 1), (4096, 4096, 1), (1024, 1024, 8)):
        p = models.predict("a100-sxm-80gb", *shape[:2], batch=shape[2], offload=offload)
        row = make_row(specs["a100-sxm-80gb"], *shape, offload=offload)
        floor_gb = max(handoff_mib(row, s) for s in MEMORY_STAGES) * MIB / 1e9
        assert p["torch_peak_allocated_gb"] >= floor_gb > 0
        assert p["peak_memory_gb"] >= p["torch_peak_allocated_gb"]
        assert p["memory_interval_gb"][0] >= p["torch_peak_allocated_gb"]


def test_predicted_memory_over_capacity_does_not_fit(models):
    p = models.predict("rtx-4090", 1024, 1024)  # 20 GB of bf16 weights on a 24 GB card
    assert p["fits"] is False
    assert p["peak_memory_gb"] + p["memory_margin_gb"] > p["memory_capacity_gb"]
    assert models.predict("rtx-4090", 1024, 1024, offload="model")["fits"] is True


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpu_id="h100"), "unknown GPU id 'h100'; did you mean h100-sxm-80gb"),
    (dict(height=1000), "height: expected a positive multiple of 16"),
    (dict(batch=0), "batch: expected an integer >= 1"),
    (dict(caption_tokens=600), "caption_tokens"),
    (dict(precision="int4"), "precision: expected one of"),
    (dict(gpu_id="v100-sxm2-32gb"), "no dense bf16 TFLOPS"),
])
def test_bad_queries_raise_advisor_errors(models, kwargs, message):
    config = dict(gpu_id=H100, height=1024, width=1024) | kwargs
    with pytest.raises(AdvisorError, match=message.replace("(", r"\(")):
        models.predict(**config)


def test_unusable_records_are_skipped_with_reasons(specs):
    tiny, cpu, no_nvml = make_record(), make_record(), make_record()
    tiny["architecture"] = "tiny"
    cpu["gpu"].update(name="cpu", catalog_id=None)
    no_nvml["results"]["nvml_peak_used_mb"] = None
    records = _with_sources(synthetic_records(grid=SMALL_GRID) + [tiny, cpu, no_nvml])
    models = fit_models(records, specs, calibrate=False)
    assert len(models.records) == len(records) - 3
    assert [p.split(": ", 1)[1] for p in models.problems] == [
        "architecture 'tiny' is not a sizing figure; skipped",
        "gpu.catalog_id None is not in the catalog; skipped",
        "results.nvml_peak_used_mb is null (no memory figures); skipped",
    ]


# ------------------------------------------------------------------------------ validation


def test_validation_report_structure(specs):
    records = _with_sources(synthetic_records(grid=SMALL_GRID, noise=0.01))
    report = validation_report(records, specs)
    for key in ("latency_mape", "memory_mape", "coverage"):
        assert set(report[key]) == {"kfold", "shape_out", "gpu_out"}
        assert all(isinstance(v, float) for v in report[key].values())
    assert report["latency_mape"]["shape_out"] < 5
    assert report["latency_mape"]["gpu_out"] < 8
    for split in ("kfold", "shape_out", "gpu_out"):
        for target in ("total_s", "denoise_step_s", "peak_memory"):
            assert set(report["metrics"][split][target]) >= {
                "mape", "median_ape", "max_ape", "coverage", "n"}
    assert len(report["metrics"]["gpu_out"]["by_gpu"]) == 2
    for split in ("kfold", "shape_out", "gpu_out"):  # tolerance scored on both memory views
        for target in ("allocated_memory", "peak_memory"):
            assert 0 <= report["metrics"][split][target]["within_tolerance_pct"] <= 100
    assert report["memory_mape"]["kfold"] == report["metrics"]["kfold"]["allocated_memory"]["mape"]
    scoped = report["metrics"]["shape_out"]["probed_settings"]
    assert scoped["total_s"]["n"] + len(scoped["excluded"]) == report["splits"]["shape_out"]["n"]
    row = report["residuals"][0]
    assert set(row) >= {"gpu", "config", "measured", "predicted", "split"}
    assert {r["split"] for r in report["residuals"]} == {"kfold", "shape_out", "gpu_out"}
    json.dumps(report)


def test_validation_with_one_gpu_says_so(specs):
    records = _with_sources(synthetic_records(gpus=(H100,), grid=SMALL_GRID, noise=0.01))
    report = validation_report(records, specs)
    assert report["latency_mape"]["gpu_out"] is None
    assert "only one GPU" in report["splits"]["gpu_out"]["note"]
    assert report["verdicts"]["latency_gpu_out"] is None


# ------------------------------------------------------------------------------ cache


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    cache = tmp_path / "cache"
    first = load_models(data, CATALOG_PATH, cache)
    assert len(list(cache.glob("models-*.pkl"))) == 1

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted although nothing changed")

    monkeypatch.setattr("advisor.fit.fit_from_files", no_refit)
    again = load_models(data, CATALOG_PATH, cache)
    assert again.model_version == first.model_version
    monkeypatch.undo()

    extra = make_record(gpu=H100, status="oom", height=2048, width=2048, batch=16)
    with open(data / f"{H100}.jsonl", "a") as f:
        f.write(json.dumps(extra) + "\n")
    changed = load_models(data, CATALOG_PATH, cache)
    assert changed.model_version != first.model_version
    assert len(list(cache.glob("models-*.pkl"))) == 2


def test_loading_the_cache_needs_neither_sklearn_nor_scipy_nor_torch(tmp_path):
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    load_models(data, CATALOG_PATH, tmp_path / "cache")
    code = (
        "import sys\n"
        "from advisor.fit import load_models\n"
        f"m = load_models({str(data)!r}, {str(CATALOG_PATH)!r}, {str(tmp_path / 'cache')!r})\n"
        f"m.predict({H100!r}, 1024, 1024)\n"
        "bad = [x for x in ('sklearn', 'scipy', 'torch') if x in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_validation_is_cached_with_the_models(tmp_path, monkeypatch):
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    report = load_models(data, CATALOG_PATH, tmp_path / "cache").validation
    monkeypatch.setattr("advisor.validation.validation_report",
                        lambda *a, **k: pytest.fail("validation recomputed"))
    assert load_models(data, CATALOG_PATH, tmp_path / "cache").validation == report


# ------------------------------------------------------------------------------ commands


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return _write_data(root / "data", synthetic_records(grid=SMALL_GRID, noise=0.01)), \
        root / "cache"


def _cli(capsys, data_dir, *argv):
    data, cache = data_dir
    rc = main([*argv, "--data", str(data), "--cache-dir", str(cache)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fit_validate_predict_commands(capsys, data_dir):
    rc, out, _ = _cli(capsys, data_dir, "fit")
    assert rc == 0 and "K-fold: latency MAPE" in out and H100 in out
    rc, out, _ = _cli(capsys, data_dir, "validate", "--format", "json")
    report = json.loads(out)
    assert rc == 0 and set(report["latency_mape"]) == {"kfold", "shape_out", "gpu_out"}
    rc, out, _ = _cli(capsys, data_dir, "validate")
    assert rc == 0 and "shape_out" in out and "MAPE%" in out
    rc, out, _ = _cli(capsys, data_dir, "predict", "--gpu", H200, "--height", "1024",
                      "--width", "1536", "--batch", "2", "--compile", "--attention", "flash",
                      "--cfg", "--format", "json")
    result = json.loads(out)
    assert rc == 0 and result["source"] == "fitted"
    assert result["config"]["compile"] and result["config"]["cfg"]
    rc, out, _ = _cli(capsys, data_dir, "predict", "--gpu", "l40s-48gb", "--height", "768",
                      "--width", "768")
    assert rc == 0 and "transferred" in out and "fits" in out


@pytest.mark.parametrize("argv, message", [
    (["--gpu", "h100-sxm-81gb", "--height", "1024", "--width", "1024"], "unknown GPU id"),
    (["--gpu", H100, "--height", "1020", "--width", "1024"], "multiple of 16"),
    (["--gpu", H100, "--height", "1024", "--width", "1024", "--batch", "0"], "batch"),
])
def test_predict_bad_input_exits_2_with_a_message(capsys, data_dir, argv, message):
    rc, out, err = _cli(capsys, data_dir, "predict", *argv)
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_or_empty_data_folder_exits_2(capsys, tmp_path):
    for folder, message in ((tmp_path / "nowhere", "measurements folder not found"),
                            (tmp_path, "no usable measurement records")):
        rc = main(["predict", "--gpu", H100, "--height", "1024", "--width", "1024",
                   "--data", str(folder), "--cache-dir", str(tmp_path / "cache")])
        err = capsys.readouterr().err
        assert rc == 2 and message in err
    (tmp_path / "bad.jsonl").write_text("{broken\n")
    rc = main(["fit", "--data", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.jsonl:1: corrupt JSON" in err
