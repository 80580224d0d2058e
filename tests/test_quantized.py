"""Quantized precisions (contract.QUANTIZATIONS) below the planner: catalog rates, weight bytes,
query rows, refusals, their own fitted settings, the bf16-twin carry to GPUs and settings that
did not measure them, the minimum-cap model, validation and `advisor predict`."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from advisor import workload
from advisor.catalog import load_catalog
from advisor.cli import main
from advisor.contract import QUALITY_CAVEAT, Config
from advisor.errors import AdvisorError
from advisor.features import (
    LATENCY_FEATURES, LATENCY_STAGES, MIB, check_config, latency_design, make_row, memory_design,
    refusal,
)
from advisor.fit import fit_models
from advisor.validation import format_table, validation_report
from tests.synthetic import (
    QUANTIZED_GRID, SQUARES_GRID, gpu_specs, law_memory, min_cap_record, synthetic_records,
    with_sources,
)
from tests.test_fit import _write_data

H100, H200, A100 = "h100-sxm-80gb", "h200-sxm-141gb", "a100-sxm-80gb"
STEP = LATENCY_STAGES.index("denoise_step")


@pytest.fixture(scope="module")
def specs():
    return gpu_specs()


@pytest.fixture(scope="module")
def records():
    """bf16 squares on both GPUs; the quantized grid (with its bf16 references) on the H200."""
    return with_sources(synthetic_records(grid=SQUARES_GRID, noise=0.0)
                        + synthetic_records(gpus=(H200,), grid=QUANTIZED_GRID, noise=0.0, seed=1))


@pytest.fixture(scope="module")
def models(records, specs):
    return fit_models(records, specs)


def width(pred) -> float:
    lo, hi = pred.latency.interval_s
    return math.log(hi / lo)


# ------------------------------------------------------------------------------ rates and bytes


def test_quantized_weights_and_rates():
    wb = workload.weight_bytes
    assert wb("fp8-wo") == wb("fp8") and wb("int8-wo") == wb("int8")
    assert wb("int8-wo")["vae"] == wb("bf16")["vae"]  # the VAE stays bf16
    assert wb("int8-wo")["transformer"] < 0.51 * wb("bf16")["transformer"]
    with pytest.raises(AdvisorError, match="fp8-wo, int8-wo"):
        wb("int2")
    catalog = load_catalog()
    h100 = catalog.get(H100)
    assert h100.dense_tflops("fp8") == 1978.9
    assert h100.dense_tflops("fp8-wo") == h100.dense_tflops("int8-wo") == 989.4  # bf16 matmuls
    assert h100.capability == (9, 0) and catalog.get(A100).capability == (8, 0)
    assert catalog.get("mi300x-192gb").capability is None


def test_a_quantized_row_keeps_bf16_activations_attention_and_vae(specs):
    fp8, bf16 = (make_row(specs[H200], Config(1024, 1024, 2, precision=p)) for p in ("fp8", "bf16"))
    assert fp8["tflops"] == 1979 and fp8["dtype_tflops"] == fp8["attention_tflops"] == 989.5
    features, resident, _ = memory_design([fp8, bf16], "denoise")
    assert np.array_equal(features[0], features[1])  # the same bf16 activations
    assert resident[0] == workload.weight_bytes("fp8")["total"] / MIB < resident[1]
    vae = latency_design([fp8, bf16], "vae_decode")
    compute = LATENCY_FEATURES["vae_decode"].index("compute")
    assert vae[0, compute] == vae[1, compute]  # convolutions at bf16, not at the fp8 peak
    step = latency_design([fp8, bf16], "denoise_step")
    matmul = LATENCY_FEATURES["denoise_step"].index("matmul")
    assert step[0, matmul] == pytest.approx(step[1, matmul] * 989.5 / 1979)


def test_what_the_models_refuse_and_why(specs):
    with pytest.raises(AdvisorError, match="int8-wo is not offered with torch.compile"):
        make_row(specs[H200], Config(1024, 1024, precision="int8-wo", compile=True))
    with pytest.raises(AdvisorError, match=r"a100-sxm-80gb: fp8 needs .* compute capability "
                                           r"8\.9 .* compute capability 8\.0"):
        make_row(specs[A100], Config(1024, 1024, precision="fp8"))
    assert refusal(specs[A100], Config(1024, 1024, precision="int8-wo")) is None
    assert "no dense bf16 TFLOPS" in refusal(specs["t4-16gb"], Config(512, 512,
                                                                      precision="int8-wo"))
    assert "unknown compute capability" in refusal(specs["mi300x-192gb"],
                                                   Config(512, 512, precision="fp8-wo"))
    with pytest.raises(AdvisorError, match="without offload only"):
        check_config(Config(1024, 1024, precision="int8-wo", offload="model"))


def test_predict_refuses_and_predict_many_too(models):
    fp8 = Config(1024, 1024, precision="fp8")
    assert "compute capability 8.0" in models.refusal(A100, fp8)
    assert models.refusal("rtx-4090", fp8) is None
    with pytest.raises(AdvisorError, match="compute capability 8.0"):
        models.predict(A100, fp8)
    with pytest.raises(AdvisorError, match="compute capability 8.0"):
        models.predict_many([("rtx-4090", fp8), (A100, fp8)])


# ------------------------------------------------------------------------------ fitted settings


def test_measured_quantized_settings_are_their_own_fits(models, specs):
    measured = models.predict(H200, Config(1024, 1024, 4, precision="fp8-wo", compile=True))
    assert measured.source == "measured"
    config = Config(1280, 1280, 1, precision="fp8")
    fitted = models.predict(H200, config)
    assert fitted.source == "fitted" and fitted.source_detail.startswith("fitted roofline")
    # the memory model holds the quantized weights: the law's peak, to the MiB
    assert fitted.memory.allocated_gb * 1e9 / MIB == pytest.approx(
        law_memory(make_row(specs[H200], config))["allocated"], rel=1e-3)
    assert fitted.memory.allocated_gb < 0.6 * models.predict(H200, Config(1280, 1280)) \
        .memory.allocated_gb


def _ratio(models, specs, gpu, config, attention="native"):
    """Stage ratios quantized / bf16 of the fitted times on `gpu`."""
    rows = [make_row(specs[gpu], dataclasses.replace(config, precision=p, attention=attention))
            for p in (config.precision, "bf16")]
    times = models.latency.predict(rows)[0]
    return times[0] / times[1]


def test_a_gpu_that_never_ran_the_precision_gets_its_bf16_time_times_the_measured_ratio(
        models, specs):
    config = Config(768, 768, 2, precision="int8-wo")
    pred = models.predict(H100, config)
    twin = models.predict(H100, dataclasses.replace(config, precision="bf16"))
    expected = twin.latency.denoise_step_s * _ratio(models, specs, H200, config)[STEP]
    assert pred.latency.denoise_step_s == pytest.approx(expected, rel=1e-9)
    assert pred.source == "fitted" and pred.source_detail.startswith(
        "int8-wo: the bf16 config's stage times on h100-sxm-80gb")
    assert "+25% (assumed) because the int8-wo / bf16 ratio is carried from h200-sxm-141gb" \
        in pred.latency.basis
    assert width(pred) == pytest.approx(width(twin) + 0.5)


def test_another_attention_on_the_same_gpu_carries_the_ratio_at_the_measured_one(models, specs):
    config = Config(1024, 1024, 1, precision="fp8", attention="flash")
    pred = models.predict(H200, config)
    twin = models.predict(H200, dataclasses.replace(config, precision="bf16"))
    expected = twin.latency.denoise_step_s * _ratio(models, specs, H200, config)[STEP]
    assert pred.latency.denoise_step_s == pytest.approx(expected, rel=1e-9)
    assert "+15% because this fp8 setting was never probed on h200-sxm-141gb" \
        in pred.latency.basis
    assert width(pred) == pytest.approx(width(twin) + 0.3)


def test_fp8_matmuls_gain_what_the_targets_fp8_peak_gains(models, specs):
    """A card whose fp8 peak were no faster than its bf16 peak keeps the bf16 matmul time:
    the fitted matmul share of the H200's fp8 step is scaled back by its 2x."""
    config = Config(1024, 1024, 1, precision="fp8")
    slow = dataclasses.replace(specs["rtx-4090"], tflops={
        **specs["rtx-4090"].tflops, "fp8": specs["rtx-4090"].tflops["bf16"]})
    as_is = models.predict("rtx-4090", config)
    flat = dataclasses.replace(models, specs={**models.specs, "rtx-4090": slow}).predict(
        "rtx-4090", config)
    ref = make_row(specs[H200], config)
    terms = models.latency.terms([ref], "denoise_step")[0]
    share = terms[LATENCY_FEATURES["denoise_step"].index("matmul")] / \
        models.latency.predict([ref])[0][0, STEP]
    peaks = lambda spec: spec.tflops["fp8"] / spec.tflops["bf16"]  # 2.0, and 1.9994 on the 4090
    assert flat.latency.denoise_step_s / as_is.latency.denoise_step_s == pytest.approx(
        (1 + share) / (1 + share * (peaks(specs[H200]) / peaks(specs["rtx-4090"]) - 1)),
        rel=1e-9)
    assert as_is.source == "transferred" and "fp8 / bf16 peak ratio 2.00 against 2.00" \
        in as_is.source_detail


def test_without_any_quantized_measurement_the_setting_counts_as_never_probed(specs):
    models = fit_models(with_sources(synthetic_records(grid=SQUARES_GRID[2:4])), specs)
    pred = models.predict(H100, Config(1024, 1024, precision="fp8-wo"))
    assert "because this setting was never probed" in pred.latency.basis
    assert not pred.source_detail.startswith("fp8-wo:")


# ------------------------------------------------------------------------------ minimum caps


def test_quantized_min_cap_searches_decide_a_small_card_and_set_their_own_offset(records,
                                                                                   specs):
    base = fit_models(records, specs)
    peak = lambda config: base.memory.predict([make_row(specs[H200], config)])["allocated"][
        0] / 1024
    trials = lambda cap: [(cap + 1, "ok"), (cap - 0.5, "oom"), (cap, "ok")]
    config = Config(1024, 1024, precision="int8-wo")
    searches = [min_cap_record(H200, peak(config), 0.75, trials, height=1024, width=1024,
                               precision="int8-wo"),
                min_cap_record(H200, peak(Config(1024, 1024)), 0.0, trials, height=1024,
                               width=1024)]
    models = fit_models(records, specs, capped=with_sources(searches, "capped.jsonl"))
    assert models.min_cap.offsets["quantized"][0] == pytest.approx(0.75 * 1024, abs=2)
    assert models.min_cap.offsets["compute"][0] == pytest.approx(0.0, abs=2)
    pred = models.predict("rtx-4080-super", config)
    assert pred.memory.min_cap_source == "capped-measured (capped.jsonl:1)"
    assert pred.memory.min_cap_gb == pytest.approx(
        searches[0]["results"]["min_cap_gib"] * 2**30 / 1e9)
    assert pred.fits and pred.memory.capacity_gb == pytest.approx(16 * 2**30 / 1e9)
    assert not models.predict("rtx-4080-super", Config(1024, 1024)).fits
    other = models.predict("rtx-4080-super", Config(768, 768, precision="fp8"))
    assert other.memory.min_cap_source.startswith("fitted: predicted peak allocated +0.75 GiB")
    assert "searches of the quantized precisions" in other.memory.min_cap_source


# ------------------------------------------------------------------------------ validation


def test_validation_scores_the_quantized_precisions_apart(records, specs):
    report = validation_report(records, specs, fit_models)
    compute = sum(r["config"]["precision"] == "bf16" for r in records)
    assert report["metrics"]["kfold"]["total_s"]["n"] == compute
    quantized = report["quantized"]
    assert list(quantized["metrics"]) == ["fp8", "fp8-wo", "int8-wo"]
    for precision, by_split in quantized["metrics"].items():
        runs = sum(r["config"]["precision"] == precision for r in records)  # 12, int8-wo 6
        assert by_split["kfold"]["total_s"]["n"] == by_split["shape_out"]["total_s"]["n"] == runs
        assert by_split["gpu_out"]["total_s"]["n"] == 0  # the H200 alone ran them
    assert quantized["unscored"] == {"kfold": 0, "shape_out": 0, "gpu_out": 30, "machine_out": 0}
    assert sum(r["config"].startswith("512x512 b1 fp8 ") for r in report["residuals"]) > 0
    table = format_table(report)
    assert "fp8-wo     kfold       latency total          12" in table
    assert "unscored points: gpu_out 30" in table


# ------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def data_dir(records, tmp_path_factory):
    """The records and one kept deliberately: int8-wo compiled, a setting not offered."""
    root = tmp_path_factory.mktemp("quantized")
    ok = next(r for r in records if r["config"]["precision"] == "int8-wo"
              and not r["config"]["compile"])
    kept = {**ok, "config": {**ok["config"], "compile": True}}
    return _write_data(root / "data", records + [kept]), root / "cache"


def test_predict_shows_the_quality_caveat_and_refuses_before_fitting(capsys, data_dir):
    data, cache = data_dir
    common = ["--height", "1024", "--width", "1024", "--data", str(data), "--cache-dir",
              str(cache)]
    assert main(["predict", "--gpu", A100, "--precision", "fp8", *common]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "compute capability 8.0" in err and not cache.exists()
    assert main(["predict", "--gpu", "rtx-4090", "--precision", "int8-wo", *common]) == 0
    out, err = capsys.readouterr()
    assert "lossy: 8-bit weights change the images" in " ".join(out.split())
    assert err == ""  # the record kept on purpose is no warning on every load...
    from advisor.cache import load_models
    from advisor.commands.fit import _summary_table

    summary = _summary_table(load_models(data, cache_dir=cache).summary())
    assert "kept: " in summary and "kept for the record, not fitted" in summary  # ...fit lists it
    assert main(["predict", "--gpu", "rtx-4090", "--precision", "fp8", "--format", "json",
                 *common]) == 0
    assert f"fp8 is {QUALITY_CAVEAT}" in json.loads(capsys.readouterr().out)["caveats"]


# ------------------------------------------------------------------------------ their own fits


def test_a_quantized_group_is_pulled_toward_its_bf16_twin_not_the_pooled_fit():
    from advisor.contract import dtype_of
    from advisor.grouped import fit_grouped_linear

    rows = [{"precision": p} for p in ["bf16"] * 4 + ["fp32"] * 4 + ["fp8"]]
    X = np.ones((9, 1))
    y = np.array([2.0] * 4 + [10.0] * 4 + [6.0])
    weights = np.array([1.0] * 8 + [1e-6])  # the fp8 row barely counts: its prior decides
    levels = ((), ("precision",))
    fit = lambda twin: fit_grouped_linear(X, y, rows, levels, weights=weights, twin=twin).coefs
    twinned, pooled = fit((("precision", dtype_of),)), fit(())
    assert twinned[1][("fp8",)][0] == pytest.approx(twinned[1][("bf16",)][0], rel=1e-3)
    assert twinned[1][("bf16",)][0] < 3 < pooled[0][()][0]
    assert pooled[1][("fp8",)][0] == pytest.approx(pooled[0][()][0], rel=1e-3)


def test_a_twin_of_a_twin_is_fitted_first_and_pulls_along_the_chain():
    """A compile mode's group is pulled toward the default mode's group of its precision,
    which is pulled toward its bf16 twin: the first pair that maps a group names its twin."""
    from advisor.contract import dtype_of
    from advisor.grouped import fit_grouped_linear

    rows = [{"precision": p, "mode": m} for p, m in
            [("bf16", "default")] * 4 + [("fp32", "default")] * 4 + [("fp8", "reduce-overhead")]]
    X = np.ones((9, 1))
    y = np.array([2.0] * 4 + [10.0] * 4 + [6.0])
    weights = np.array([1.0] * 8 + [1e-6])
    levels = ((), ("precision", "mode"))
    twin = (("mode", lambda m: "default"), ("precision", dtype_of))
    coefs = fit_grouped_linear(X, y, rows, levels, weights=weights, twin=twin).coefs
    # fp8/reduce-overhead's twin, fp8/default, was never measured: its parent's pull decides
    assert coefs[1][("fp8", "reduce-overhead")][0] == pytest.approx(coefs[0][()][0], rel=1e-3)
    rows[-1] = {"precision": "fp8", "mode": "default"}
    rows.append({"precision": "fp8", "mode": "reduce-overhead"})
    X, y, weights = np.ones((10, 1)), np.append(y, 6.0), np.append(weights, 1e-6)
    coefs = fit_grouped_linear(X, y, rows, levels, weights=weights, twin=twin).coefs
    chain = [coefs[1][g][0] for g in (("fp8", "reduce-overhead"), ("fp8", "default"),
                                       ("bf16", "default"))]
    assert chain == pytest.approx([chain[2]] * 3, rel=1e-3)
    assert chain[2] < 3 < coefs[0][()][0]


def test_each_quantized_family_has_its_own_step_floor(specs):
    """An fp8 eager step that the host holds at 0.15 s (torchao's eager dispatch), beside the
    compute precisions' 0.05 s (the standard grid's small shapes show it)."""
    slow = []
    for record in synthetic_records(noise=0.0) + synthetic_records(
            gpus=(H200,), grid=QUANTIZED_GRID, noise=0.0, seed=1):
        c = record["config"]
        if record["status"] == "ok" and c["precision"] == "fp8" and not c["compile"]:
            res = record["results"]
            delta = max(res["denoise_step_s"], 0.15) - res["denoise_step_s"]
            for key, times in (("denoise_step_s", 1), ("denoise_first_step_s", 1),
                               ("denoise_s", c["steps"]), ("total_s", c["steps"])):
                res[key] += times * delta
        slow.append(record)
    latency = fit_models(slow, specs).latency
    floors = latency.floors["denoise_step"]
    assert floors["compute"] == pytest.approx(0.05, rel=1e-6)
    assert floors["fp8 eager"] == pytest.approx(0.15, rel=1e-6)
    rows = [make_row(specs[H200], Config(512, 512, precision=p)) for p in ("fp8", "bf16")]
    assert latency.predict(rows)[0][:, STEP] == pytest.approx([0.15, 0.05], rel=1e-6)
    assert latency.efficiencies(rows[0])["denoise_step"]["floor_s"] == pytest.approx(0.15)


def test_the_vae_and_the_rest_of_a_call_share_bf16s_groups(models, specs):
    fp8, bf16 = (make_row(specs[H200], Config(1024, 1024, precision=p)) for p in ("fp8", "bf16"))
    for stage in ("vae_decode", "other"):
        assert np.array_equal(models.latency.tables[stage].lookup(fp8)[0],
                              models.latency.tables[stage].lookup(bf16)[0])
    assert not np.array_equal(models.latency.tables["text_encode"].lookup(fp8)[0],
                              models.latency.tables["text_encode"].lookup(bf16)[0])


def test_quantized_fitted_predictions_get_intervals_from_their_own_residuals(records, specs):
    from advisor.calibration import fit_calibrated

    models = fit_calibrated(records, specs)
    iv = models.intervals["latency"]
    assert iv.quantized is not None and iv.n_quantized > 0
    assert iv.n_fitted + iv.n_quantized <= 2 * len(records)
    fitted = models.predict(H200, Config(1280, 1280, precision="fp8-wo"))
    assert fitted.latency.basis.startswith(f"{iv.n_quantized} K-fold and leave-one-shape-out "
                                           "residuals of the quantized precisions' runs")
    bf16 = models.predict(H200, Config(1280, 1280))
    assert bf16.latency.basis.startswith(f"{iv.n_fitted} K-fold")
    # a host-bound config: bf16 takes the host-bound bounds, a quantized one still its own
    assert iv.host_bound is not None
    small = {p: models.predict(H200, Config(512, 384, precision=p)) for p in ("bf16", "fp8-wo")}
    assert "residuals of host-bound configs" in small["bf16"].latency.basis
    assert small["fp8-wo"].latency.basis.startswith(
        f"{iv.n_quantized} K-fold and leave-one-shape-out residuals of the quantized precisions'")



def test_a_record_of_a_setting_not_offered_is_kept_for_the_record_not_fitted(specs, records):
    from advisor.fit import usable
    ok = next(r for r in records if r["config"]["precision"] == "int8-wo"
              and not r["config"]["compile"])
    compiled = {**ok, "config": {**ok["config"], "compile": True}, "_source": "q.jsonl:7"}
    rows, used, problems, kept = usable([ok, compiled], specs)
    assert used == [ok] and len(rows) == 1 and problems == []
    [problem] = kept
    assert problem.startswith("q.jsonl:7: ") and "not offered with torch.compile" in problem
    assert problem.endswith("; kept for the record, not fitted")


def test_a_setting_never_measured_takes_its_defaults_coefficients_not_the_pooled_ones():
    from advisor.grouped import fit_grouped_linear

    rows = [{"mode": m} for m in ["default"] * 4 + ["other"] * 4]
    X, y = np.ones((8, 1)), np.array([2.0] * 4 + [10.0] * 4)
    table = fit_grouped_linear(X, y, rows, ((), ("mode",)), defaults=(("mode", "default"),))
    coef, depth = table.lookup({"mode": "reduce-overhead"})
    assert depth == 1 and coef == pytest.approx(table.coefs[1][("default",)])
    bare = fit_grouped_linear(X, y, rows, ((), ("mode",)))
    assert bare.lookup({"mode": "reduce-overhead"})[1] == 0  # without: the pooled level
