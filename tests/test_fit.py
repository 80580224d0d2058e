"""Fitted models: recovery of a known law, estimator conventions, predictions and their sources,
OOM boundaries, the validation report, the cache, and the fit/validate/predict commands."""
from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from advisor import CATALOG_PATH, REPO_ROOT
from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.cache import load_models, validation_of
from advisor.calibration import fit_calibrated
from advisor.contract import Config, Parallel, Prediction
from advisor.estimators import LatencyRegressor, MemoryRegressor
from advisor.features import LATENCY_STAGES, make_row
from advisor.fit import fit_models, targets, usable
from advisor.validation import format_table, validation_report
from tests.synthetic import (
    LAW, SQUARES_GRID, gpu_specs, law_latency, law_memory, make_record, synthetic_records,
    with_sources,
)

H100, H200 = "h100-sxm-80gb", "h200-sxm-141gb"
SMALL_GRID = [dict(height=h, width=w, batch=b)
              for h, w in ((512, 512), (768, 768), (1024, 1024), (1024, 768), (1536, 1536))
              for b in (1, 4)]


@pytest.fixture(scope="module")
def specs():
    return gpu_specs()


def query_row(spec, height, width, batch=1, **setting):
    return make_row(spec, Config(height, width, batch, **setting))


@pytest.fixture(scope="module")
def exact(specs):
    """Estimators fitted on noise-free records of the standard-like grid on two GPUs."""
    rows, ok, *_ = usable(synthetic_records(noise=0.0), specs)
    assert all(r["status"] == "ok" for r in ok)
    y = targets(ok)
    return (LatencyRegressor().fit(rows, y["latency"]),
            MemoryRegressor().fit(rows, y["memory"], stage_peaks=y["stage_peaks"],
                                  reserved=y["reserved"]))


@pytest.fixture(scope="module")
def models(specs):
    return fit_calibrated(with_sources(synthetic_records(noise=0.01)), specs)


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
    row = query_row(specs[gpu], *shape)
    law = law_latency(row)
    predicted = latency.predict([row])[0]
    for i, stage in enumerate(LATENCY_STAGES):
        assert predicted[i] == pytest.approx(law[stage], rel=0.01), stage
    allocated, nvml = memory.predict([row])[0]
    assert allocated == pytest.approx(law_memory(row)["allocated"], rel=0.002)
    assert nvml == pytest.approx(law_memory(row)["nvml"], rel=0.002)


def test_fitted_efficiencies_match_the_law(exact, specs):
    coef = exact[0].predictor_.efficiencies(query_row(specs[H100], 1024, 1024))["denoise_step"]
    assert coef["matmul"] == pytest.approx(LAW["denoise_step"][1], rel=0.05)
    assert coef["attention"] == pytest.approx(LAW["denoise_step"][2], rel=0.05)
    assert coef["hbm"] == pytest.approx(LAW["denoise_step"][3], rel=0.25)
    # CFG's masked attention (the two captions differ in length) runs slower than plain.
    assert coef["cfg_attention"] == pytest.approx(LAW["denoise_step"][5], rel=0.05)


def test_a_slow_host_at_host_bound_shapes_barely_moves_the_other_predictions(specs):
    """Inverse-variance weighting: a host-bound row (512x512 b1, its host-side rest of the call
    made 1.3x slower, as on a slower host) weighs (1.9 / 14.8)^2 of a compute-bound one, so it
    no longer drags the fit of the shapes that share its terms."""
    records = synthetic_records(grid=SMALL_GRID, noise=0.0)
    for r in records:
        c, res = r["config"], r["results"]
        if c["height"] * c["width"] * c["batch"] <= 512 * 512:
            res["total_s"] += 0.3 * res["other_s"]
            res["other_s"] *= 1.3
    rows, ok, *_ = usable(records, specs)
    y = targets(ok)["latency"]
    query = query_row(specs[H100], 1024, 1024, batch=4)
    other = LATENCY_STAGES.index("other")
    miss = lambda estimator: abs(estimator.fit(rows, y).predict([query])[0][other]
                                 / law_latency(query)["other"] - 1)
    assert miss(LatencyRegressor(host_bound_weight=1.0)) > 0.05
    assert miss(LatencyRegressor()) < 0.01


def test_small_steps_are_bounded_by_the_fitted_floor(exact, specs):
    latency = exact[0]
    assert latency.predictor_.floors["denoise_step"] == {
        "compute": pytest.approx(LAW["denoise_step_floor"], rel=1e-6)}
    for gpu in (H100, H200):
        for precision in ("bf16", "fp16"):
            row = query_row(specs[gpu], 512, 512, precision=precision)
            law = law_latency(row)["denoise_step"]
            assert law == LAW["denoise_step_floor"]  # the law's GPU time is below it here
            assert latency.predict([row])[0][1] == pytest.approx(law, rel=1e-6)
    # A slower GPU's own time at that shape is above the floor: the linear terms answer.
    slow = query_row(specs["a100-sxm-80gb"], 512, 512)
    assert law_latency(slow)["denoise_step"] > 1.5 * LAW["denoise_step_floor"]
    assert latency.predict([slow])[0][1] == pytest.approx(law_latency(slow)["denoise_step"],
                                                           rel=0.05)


def test_no_floor_without_small_steps_that_show_one(specs):
    grid = [g for g in SMALL_GRID if g["height"] >= 1024]
    rows, ok, *_ = usable(synthetic_records(grid=grid, noise=0.01), specs)
    latency = LatencyRegressor().fit(rows, targets(ok)["latency"])
    assert latency.predictor_.floors["denoise_step"] == {}
    small = query_row(specs[H100], 512, 512)
    assert latency.predict([small])[0][1] < LAW["denoise_step_floor"]


@pytest.mark.parametrize("rounds, tolerance", [(2, 0.01), (0, None)])
def test_one_unsettled_record_does_not_drag_its_setting(specs, rounds, tolerance):
    """A step timed 60% slow (a warm-up left in the record) barely moves the fp16 group's fit
    with the robust refits; without them (rounds=0) its neighbour misses by more than 1%."""
    records = synthetic_records(noise=0.0)
    slow = next(r for r in records if r["gpu"]["catalog_id"] == H100 and r["status"] == "ok"
                and r["config"]["precision"] == "fp16" and r["config"]["height"] == 1024
                and r["config"]["batch"] == 1)
    res = slow["results"]
    extra = 0.6 * res["denoise_step_s"] * slow["config"]["steps"]
    res["denoise_step_s"] *= 1.6
    res["denoise_s"] += extra
    res["total_s"] += extra
    rows, ok, *_ = usable(records, specs)
    latency = LatencyRegressor(robust_rounds=rounds).fit(rows, targets(ok)["latency"])
    neighbour = query_row(specs[H100], 1024, 1024, 4, precision="fp16")
    error = abs(latency.predict([neighbour])[0][1] / law_latency(neighbour)["denoise_step"] - 1)
    assert error < 0.01 if tolerance else error > 0.01


def test_attention_under_tf32_runs_at_the_fp32_rate(specs):
    tf32 = query_row(specs[H100], 1024, 1024, precision="fp32-tf32")
    assert tf32["attention_tflops"] == specs[H100].tflops["fp32"] < tf32["tflops"]
    bf16 = query_row(specs[H100], 1024, 1024)
    assert bf16["attention_tflops"] == bf16["tflops"]


def test_latency_transfers_to_an_unprobed_gpu(exact, specs):
    row = query_row(specs["a100-sxm-80gb"], 1024, 1024, 2)
    predicted = exact[0].predict([row])[0]
    law = law_latency(row)
    assert predicted[1] == pytest.approx(law["denoise_step"], rel=0.05)


def test_estimators_follow_sklearn_conventions(exact, specs):
    latency, memory = exact
    for est in (latency, memory):
        fresh = clone(est)
        assert fresh.get_params() == est.get_params()
        assert not hasattr(fresh, "predictor_")
        with pytest.raises(NotFittedError):
            fresh.predict([query_row(specs[H100], 512, 512)])
        restored = pickle.loads(pickle.dumps(est))
        rows = [query_row(specs[H100], 768, 1344, 2)]
        np.testing.assert_allclose(restored.predict(rows), est.predict(rows))
    params = LatencyRegressor(prior_strength=3.0).set_params(per_gpu=False).get_params()
    assert params["prior_strength"] == 3.0 and params["per_gpu"] is False
    assert {"robust_rounds", "robust_scale", "floor_window", "hbm_prior_weight",
            "host_bound_weight"} <= set(params)


@pytest.mark.parametrize("estimator, bad", [
    (LatencyRegressor, dict(robust_scale=0)), (LatencyRegressor, dict(floor_evidence=0)),
    (LatencyRegressor, dict(host_bound_weight=0)), (LatencyRegressor, dict(host_bound_weight=2)),
    (MemoryRegressor, dict(pressure_fraction=1.5)), (MemoryRegressor, dict(prior_strength=-1)),
])
def test_bad_hyper_parameters_are_refused_at_fit(specs, estimator, bad):
    rows, ok, *_ = usable(synthetic_records(grid=SMALL_GRID[:4]), specs)
    y = targets(ok)["latency" if estimator is LatencyRegressor else "memory"]
    with pytest.raises(ValueError, match=next(iter(bad))):
        estimator(**bad).fit(rows, y)


def test_grid_search_over_hyper_parameters_with_group_folds(specs):
    """get_params/set_params/clone make scikit-learn's model selection work as is."""
    from sklearn.model_selection import GridSearchCV, GroupKFold

    rows, ok, *_ = usable(synthetic_records(grid=SMALL_GRID, noise=0.02), specs)
    groups = [f"{r['height']}x{r['width']}" for r in rows]
    search = GridSearchCV(LatencyRegressor(), {"robust_rounds": [0, 1]}, cv=GroupKFold(3))
    search.fit(rows, targets(ok)["latency"], groups=groups)
    assert search.best_params_["robust_rounds"] in (0, 1)
    assert search.best_estimator_.predictor_ is not None


def test_models_keep_their_fitted_estimators(models, specs):
    rebuilt = models.estimators()
    assert rebuilt["latency"].get_params() == LatencyRegressor().get_params()
    rows = [query_row(specs[H100], 768, 1344, 2)]
    np.testing.assert_allclose(rebuilt["latency"].predict(rows), models.latency.predict(rows)[0])


# ------------------------------------------------------------------------------ predictions


def test_prediction_fields_and_sources(models):
    fitted = models.predict(H100, Config(1024, 768, 2, steps=8))
    assert isinstance(fitted, Prediction) and fitted.source == "fitted"
    lat = fitted.latency
    assert lat.total_s == pytest.approx(lat.text_encode_s + lat.denoise_s + lat.vae_decode_s
                                        + lat.other_s)
    lo, hi = lat.interval_s
    assert lo <= lat.total_s <= hi
    assert fitted.images_per_s == pytest.approx(2 / lat.total_s)
    assert 0 < fitted.mfu < 1
    assert fitted.memory.needed_gb >= fitted.memory.allocated_gb + 1.0
    json.dumps(fitted.as_dict())  # plain JSON types only

    measured = models.predict(H100, Config(1024, 1024))
    assert measured.source == "measured"
    record = next(r for r in models.records if r["gpu"]["catalog_id"] == H100
                  and Config.from_record(r["config"]) == Config(1024, 1024))
    assert measured.latency.total_s == pytest.approx(record["results"]["total_s"])
    assert record["_source"] in measured.source_detail
    assert measured.power.watts == record["results"]["power_w"]
    assert measured.fits and record["_source"] in measured.fits_reason
    assert fitted.power.watts is not None and fitted.power.energy_j_per_image > 0

    transferred = models.predict("a100-sxm-80gb", Config(1024, 768, 2, steps=8))
    assert transferred.source == "transferred"
    width = lambda p: p.latency.interval_s[1] / p.latency.interval_s[0]
    assert width(transferred) > width(fitted)
    assert "Ampere" in transferred.latency.basis
    assert transferred.power.watts is None


def test_a_setting_probed_at_one_shape_gets_wider_intervals_elsewhere(specs):
    grid = SMALL_GRID + [dict(height=1024, width=1024, batch=b, compile=True) for b in (1, 4)]
    models = fit_models(with_sources(synthetic_records(grid=grid, noise=0.01)), specs)
    width = lambda p: p.latency.interval_s[1] / p.latency.interval_s[0]
    compiled = models.predict(H100, Config(768, 768, 2, compile=True))
    assert "probed at one shape only" in compiled.latency.basis
    assert width(compiled) > width(models.predict(H100, Config(768, 768, 2)))
    same_shape = models.predict(H100, Config(1024, 1024, 2, compile=True))
    assert "one shape" not in same_shape.latency.basis


def test_predict_many_matches_predict(models):
    queries = [(H200, Config(h, w, b)) for h, w, b in ((512, 512, 1), (1536, 1024, 3),
                                                         (2048, 2048, 2))]
    for query, result in zip(queries, models.predict_many(queries)):
        assert result == models.predict(*query)


def test_more_work_takes_longer_and_more_memory(models):
    small = models.predict(H100, Config(1024, 1024, 2))
    large = models.predict(H100, Config(1024, 1024, 8))
    assert large.latency.total_s > small.latency.total_s
    assert large.memory.allocated_gb > small.memory.allocated_gb
    cfg = models.predict(H100, Config(1024, 1024, 2, guidance_scale=4.0))
    assert cfg.latency.denoise_s > 1.8 * small.latency.denoise_s


def test_measured_oom_makes_that_shape_and_larger_not_fit(specs):
    records = synthetic_records(grid=SMALL_GRID, noise=0.01)
    records.append(make_record(gpu=H100, status="oom", height=1536, width=1536, batch=8))
    models = fit_models(with_sources(records), specs)
    for batch in (8, 16):
        p = models.predict(H100, Config(1536, 1536, batch))
        assert p.fits is False and "out of memory" in p.fits_reason
        assert "syn.jsonl" in p.fits_reason
    assert models.predict(H100, Config(2048, 2048, 8)).fits is False
    assert models.predict(H100, Config(1536, 1536, 4)).fits is True
    assert models.predict(H100, Config(1536, 1536, 8, precision="fp16")).fits is True
    assert models.predict(H200, Config(1536, 1536, 8)).fits is True


def test_a_larger_image_out_of_memory_says_nothing_of_a_larger_batch(specs):
    """Pixels and batch are compared apart: a 2048x2048 batch-2 OOM does not make 1024x1024
    batch 8 (the same pixels x batch) unfit, and a measured run fits whatever the model says."""
    records = synthetic_records(grid=SMALL_GRID, noise=0.01)
    records.append(make_record(gpu=H100, status="oom", height=2048, width=2048, batch=2))
    models = fit_models(with_sources(records), specs)
    assert models.predict(H100, Config(2048, 2048, 4)).fits is False
    below = models.predict(H100, Config(1024, 1024, 8))
    assert below.fits and "out of memory" not in below.fits_reason
    ran = models.predict(H100, Config(1024, 1024, 4), memory_margin_gb=100.0)
    assert ran.fits and ran.fits_reason.startswith("measured")
    assert not models.predict(H100, Config(1024, 1024, 8), memory_margin_gb=100.0).fits


@pytest.mark.parametrize("offload", ["none", "model", "sequential"])
def test_memory_predictions_never_fall_below_the_resident_weights(models, specs, offload):
    from advisor.features import MEMORY_STAGES, MIB, handoff_mib

    for shape in ((256, 256, 1), (4096, 4096, 1), (1024, 1024, 8)):
        p = models.predict("a100-sxm-80gb", Config(*shape, offload=offload))
        row = query_row(specs["a100-sxm-80gb"], *shape, offload=offload)
        floor_gb = max(handoff_mib(row, s) for s in MEMORY_STAGES) * MIB / 1e9
        assert p.memory.allocated_gb >= floor_gb > 0
        assert p.memory.nvml_gb >= p.memory.allocated_gb
        assert p.memory.nvml_interval_gb[0] >= p.memory.allocated_gb


def test_predicted_memory_over_capacity_does_not_fit(models):
    p = models.predict("rtx-4090", Config(1024, 1024))  # 20 GB of bf16 weights, 24 GB card
    assert p.fits is False and "over" in p.fits_reason
    assert p.memory.needed_gb > p.memory.capacity_gb
    assert models.predict("rtx-4090", Config(1024, 1024, offload="model")).fits is True


@pytest.mark.parametrize("gpu, config, message", [
    ("h100", Config(1024, 1024), "unknown GPU id 'h100'; did you mean h100-sxm-80gb"),
    (H100, Config(1000, 1024), "height: expected a positive multiple of 16"),
    (H100, Config(1024, 1024, 0), "batch: expected an integer >= 1"),
    (H100, Config(1024, 1024, caption_tokens=600), "caption_tokens"),
    (H100, Config(1024, 1024, precision="int4"), "precision: expected one of"),
    ("v100-sxm2-32gb", Config(1024, 1024), "no dense bf16 TFLOPS"),
    # fields the probe varies but no model covers: refused, never answered as the plain config
    (H100, Config(1024, 1024, memory_cap_gib=20.0), "memory_cap_gib: 20.0 is not modelled"),
    (H100, Config(2048, 2048, vae="tiling"), "vae: 'tiling' is not modelled"),
    (H100, Config(1024, 1024, max_sequence_length=256), "max_sequence_length: 256 is not "
     "modelled"),
    (H100, Config(1024, 1024, parallel=Parallel("data", 2)), "parallel: datax2 is not modelled"),
])
def test_bad_queries_raise_advisor_errors(models, gpu, config, message):
    with pytest.raises(AdvisorError, match=message.replace("(", r"\(")):
        models.predict(gpu, config)


def test_unusable_records_are_skipped_with_reasons(specs):
    tiny, cpu, no_nvml = make_record(), make_record(), make_record()
    tiny["architecture"] = "tiny"
    cpu["gpu"].update(name="cpu", catalog_id=None)
    no_nvml["results"]["nvml_peak_used_mb"] = None
    # a capped, tiled, 256-token run: not fitted as if it were the plain config
    unmodelled = make_record(memory_cap_gib=20.0, vae="tiling", max_sequence_length=256)
    records = with_sources(synthetic_records(grid=SMALL_GRID) + [tiny, cpu, no_nvml,
                                                                  unmodelled])
    models = fit_models(records, specs)
    assert len(models.records) == len(records) - 4
    assert [p.split(": ", 1)[1] for p in models.problems] == [
        "architecture 'tiny' is not a sizing figure; skipped",
        "gpu.catalog_id None is not in the catalog; skipped",
        "results.nvml_peak_used_mb is null (no memory figures); skipped",
        "vae: 'tiling' is not modelled (tiled and sliced VAE decodes are probed, not fitted); the "
        "models answer for vae 'full' only; skipped",
    ]


# ------------------------------------------------------------------------------ validation


FORKED_VALIDATION = """
import json, os, sys
from advisor import validation
from advisor.calibration import fit_calibrated
from tests.synthetic import synthetic_records, with_sources
from tests.test_fit import SMALL_GRID, gpu_specs

fold_points = validation._fold_points
def recorded(*args):
    with open(sys.argv[1], "a") as out:
        out.write(f"{os.getpid()}\\n")
    return fold_points(*args)
validation._fold_points = recorded
records = with_sources(synthetic_records(grid=SMALL_GRID, noise=0.01))
report = validation.validation_report(records, gpu_specs(), fit_calibrated, workers=2)
print(json.dumps({"pid": os.getpid(), "report": report}))
"""


def test_validation_folds_in_forked_workers_give_the_same_report(specs, tmp_path):
    """`workers` 2 from a process without other threads (as `advisor validate` runs it): every
    fold is fitted in a forked process, and the report is the one computed here fold by fold."""
    pids = tmp_path / "pids"
    out = subprocess.run([sys.executable, "-c", FORKED_VALIDATION, str(pids)], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    forked = json.loads(out.stdout)
    fold_pids = set(pids.read_text().split())
    assert fold_pids and str(forked["pid"]) not in fold_pids  # every fold ran in a worker
    here = validation_report(with_sources(synthetic_records(grid=SMALL_GRID, noise=0.01)),
                             specs, fit_calibrated)
    assert forked["report"] == json.loads(json.dumps(here))


def test_validation_report_structure(specs):
    records = with_sources(synthetic_records(grid=SMALL_GRID, noise=0.01))
    report = validation_report(records, specs, fit_calibrated)
    for key in ("latency_mape", "memory_mape", "coverage"):
        assert set(report[key]) == {"kfold", "shape_out", "gpu_out", "machine_out"}
        assert report[key].pop("machine_out") is None  # no GPU measured on two machines
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


def test_machine_out_predicts_each_machine_of_a_gpu_from_the_rest(specs):
    records = with_sources(synthetic_records(grid=SMALL_GRID, noise=0.01))
    h100 = [r for r in records if r["gpu"]["catalog_id"] == H100]
    for i, r in enumerate(h100):
        r["gpu"]["uuid"] = f"GPU-{'ab'[i % 2]}"
    report = validation_report(records, specs, fit_calibrated)
    by_machine = report["metrics"]["machine_out"]["by_machine"]
    assert set(by_machine) == {f"{H100} GPU-a", f"{H100} GPU-b"}
    assert sum(m["n"] for m in by_machine.values()) == report["splits"]["machine_out"]["n"] \
        == len([r for r in h100 if r["status"] == "ok"])
    assert report["latency_mape"]["machine_out"] < 5
    assert "machine_out h100-sxm-80gb GPU-a" in format_table(report)


def test_validation_with_one_gpu_says_so(specs):
    records = with_sources(synthetic_records(gpus=(H100,), grid=SMALL_GRID, noise=0.01))
    report = validation_report(records, specs, fit_calibrated)
    assert report["latency_mape"]["gpu_out"] is None
    assert "only one GPU" in report["splits"]["gpu_out"]["note"]
    assert report["verdicts"]["latency_gpu_out"] is None


# ------------------------------------------------------------------------------ cache


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    cache = tmp_path / "cache"
    first = load_models(data, CATALOG_PATH, cache)
    assert len(list(cache.glob("models-*.npz"))) == 1

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted although nothing changed")

    monkeypatch.setattr("advisor.cache.fit_from_files", no_refit)
    again = load_models(data, CATALOG_PATH, cache)
    assert again.model_version == first.model_version
    monkeypatch.undo()

    extra = make_record(gpu=H100, status="oom", height=2048, width=2048, batch=16)
    with open(data / f"{H100}.jsonl", "a") as f:
        f.write(json.dumps(extra) + "\n")
    changed = load_models(data, CATALOG_PATH, cache)
    assert changed.model_version != first.model_version
    assert len(list(cache.glob("models-*.npz"))) == 2


def test_cache_key_covers_every_source_file_of_the_package(tmp_path, monkeypatch):
    """Not a hand-kept list: a module the models depend on indirectly (the catalog reader,
    the contract) changes the key as well."""
    import advisor.cache as cache

    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID[:2]))
    package = tmp_path / "advisor"
    package.mkdir()
    for name in ("catalog.py", "contract.py"):
        (package / name).write_text("# v1\n")
    monkeypatch.setattr(cache, "PACKAGE_DIR", package)
    before = cache.cache_key(data, CATALOG_PATH)
    (package / "catalog.py").write_text("# v2\n")
    assert cache.cache_key(data, CATALOG_PATH) != before


def test_loading_the_cache_needs_neither_sklearn_nor_scipy_nor_torch(tmp_path):
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    load_models(data, CATALOG_PATH, tmp_path / "cache")
    code = (
        "import sys\n"
        "from advisor.cache import load_models\n"
        "from advisor.contract import Config\n"
        f"m = load_models({str(data)!r}, {str(CATALOG_PATH)!r}, {str(tmp_path / 'cache')!r})\n"
        f"m.predict({H100!r}, Config(1024, 1024))\n"
        "bad = [x for x in ('sklearn', 'scipy', 'torch') if x in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_validation_is_cached_with_the_models(tmp_path, monkeypatch):
    data = _write_data(tmp_path / "data", synthetic_records(grid=SMALL_GRID, noise=0.01))
    steps = []
    report = validation_of(load_models(data, CATALOG_PATH, tmp_path / "cache"),
                           progress=lambda *step: steps.append(step))
    # a first validation says where it is: each split, then the published points
    assert steps[0] == (1, 5, "kfold") and steps[-1] == (5, 5, "published and capped")
    assert len(steps) == 5 and any((tmp_path / "cache").glob("*.validation.lock"))
    monkeypatch.setattr("advisor.validation.validation_report",
                        lambda *a, **k: pytest.fail("validation recomputed"))
    assert validation_of(load_models(data, CATALOG_PATH, tmp_path / "cache"),
                         progress=lambda *step: pytest.fail("progress without work")) == report


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
    assert rc == 0 and set(report["latency_mape"]) == {"kfold", "shape_out", "gpu_out",
                                                       "machine_out",
                                                       "published"}
    assert report["published"]["n"] >= 1 and "rows" in report["published"]
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


def test_the_report_gives_the_spread_between_machines_per_regime(specs):
    records = with_sources(synthetic_records(gpus=(H200,), grid=SMALL_GRID, noise=0.0))
    again = copy.deepcopy([r for r in records if r["config"]["batch"] == 1])
    for r in again:  # another GPU in a container that shows the same host
        r["gpu"]["uuid"] = "GPU-second"
        r["results"]["total_s"] *= 1.5 if r["config"]["height"] == 512 else 1.05
    report = validation_report(records + again, specs, fit_calibrated)
    machines = report["machines"]
    assert machines["host_bound"]["n"] == 1
    assert machines["host_bound"]["max_pct"] == pytest.approx(50.0)
    assert machines["compute_bound"]["median_pct"] == pytest.approx(5.0)
    # each machine against the other: 1.5 / 1 and 1 / 1.5 miss by 50% and 33%
    assert machines["host_bound"]["floor_mape_pct"] == pytest.approx((50 + 100 / 3) / 2)
    by_regime = report["metrics"]["kfold"]["by_regime"]
    assert set(by_regime) == {"compute_bound", "host_bound"}
    assert by_regime["host_bound"]["n"] == 2  # 512x512 b1, once on each machine
    assert by_regime["host_bound"]["mape"] > by_regime["compute_bound"]["mape"]


def test_host_bound_configs_get_intervals_of_their_own(specs):
    """Mondrian calibration: residuals of host-bound configs (512x512 b1 here, measured on
    machines that differ by 1.5x) set their intervals; compute-bound ones keep theirs."""
    records = with_sources(synthetic_records(grid=SMALL_GRID, noise=0.01))
    again = copy.deepcopy([r for r in records if Config.from_record(r["config"]).regime()
                           == "host_bound"])
    for r in again:
        r["gpu"]["uuid"] = "GPU-slow-host"
        r["results"]["total_s"] *= 1.5
    models = fit_calibrated(records + again, specs)
    width = lambda p: p.latency.interval_s[1] / p.latency.interval_s[0]
    host = models.predict(H100, Config(512, 384, 1))
    compute = models.predict(H100, Config(768, 1024, 2))
    assert "host-bound" in host.latency.basis and "host-bound" not in compute.latency.basis
    assert width(host) > 1.3 * width(compute)
    assert models.intervals["latency"].host_bound.n_fitted >= 2
    from advisor.commands.fit import _summary_table
    summary = models.summary()
    assert summary["intervals"]["latency"]["host_bound"]["n_fitted"] >= 2
    assert "; host-bound configs: fitted -" in _summary_table(summary)

    alone = fit_calibrated(with_sources(synthetic_records(grid=SMALL_GRID[2:], noise=0.01)),
                           specs)  # no host-bound config measured: one width for all
    assert alone.intervals["latency"].host_bound is None
    assert "host-bound" not in alone.predict(H100, Config(512, 384, 1)).latency.basis


def test_a_machine_is_its_gpu_uuid_then_its_host_fingerprint():
    from advisor.records import machine_of

    record = {"gpu": {"uuid": "GPU-a"}, "host": {"fingerprint": "cbc1f8b22885"}}
    assert machine_of(record) == "GPU-a"
    assert machine_of({"gpu": {"uuid": None}, "host": {"fingerprint": "cbc1f8b22885"}}) \
        == "cbc1f8b22885"
    assert machine_of({"gpu": {}, "host": {}}) is None


def test_configs_beyond_the_probed_sizes_get_wider_intervals_and_say_why(models):
    width = lambda p: p.latency.interval_s[1] / p.latency.interval_s[0]
    inside = models.predict(H100, Config(1536, 1536, 2))
    beyond = models.predict(H100, Config(4096, 4096, 2))
    assert "beyond the probed sizes" not in inside.latency.basis
    assert "+20% because the config is beyond the probed sizes (4096x4096 is larger" \
        in beyond.latency.basis  # two doublings of pixels past 2048x2048
    assert width(beyond) > width(inside) * 1.3


def test_a_host_bound_prediction_says_its_speed_depends_on_the_machine(models):
    from advisor.catalog import load_catalog
    from advisor.coverage import Probed, caveats

    gpu, probed = load_catalog().get(H100), Probed.of(models.records)
    small = " ".join(caveats(models.predict(H100, Config(512, 512)), gpu, probed))
    assert "host-bound: one image this small keeps a fast GPU waiting" in small
    for config in (Config(512, 512, batch=2), Config(1024, 1024)):
        assert not any("host-bound" in c for c in caveats(models.predict(H100, config), gpu,
                                                          probed))


def test_a_setting_only_the_held_out_gpu_ran_does_not_widen_the_transfer_interval(specs):
    """Leave-one-GPU-out residuals calibrate transferred predictions, which rest on settings
    the probed GPUs measured. A setting one GPU alone ran (here VAE compile, three times
    slower than the law) is predicted from no run of it when that GPU is held out: such points
    are flagged and kept out of the transferred interval."""
    from advisor.fit import fit_models
    from advisor.validation import cross_predict

    base = synthetic_records(grid=SQUARES_GRID, noise=0.01)
    odd = synthetic_records(gpus=("h100-sxm-80gb",), noise=0.01, seed=1, grid=[
        dict(g, compile=True, vae_compile=True) for g in SQUARES_GRID])
    for r in odd:
        r["results"]["total_s"] *= 3
        r["results"]["vae_decode_s"] = r["results"]["total_s"] - sum(
            r["results"][k] for k in ("text_encode_s", "denoise_s", "other_s"))
    points = cross_predict(with_sources(base + odd), specs, "gpu_out", fit_models)
    flagged = {p["config"].get("vae_compile", False): p["setting_anywhere"] for p in points}
    assert flagged == {False: True, True: False}
    plain = fit_calibrated(with_sources(synthetic_records(grid=SQUARES_GRID, noise=0.01)), specs)
    with_odd = fit_calibrated(with_sources(base + odd), specs)
    # the odd runs still train the other GPU's fold (a little), but their +200% never enters
    lo, hi = with_odd.intervals["latency"].transferred
    assert hi < 0.1 and (lo, hi) == pytest.approx(plain.intervals["latency"].transferred,
                                                  abs=0.01)
