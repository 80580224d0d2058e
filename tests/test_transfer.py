"""Op-class transfer to GPUs never probed (advisor.transfer) on a synthetic profile law."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from advisor.contract import Config
from advisor.features import make_row
from advisor.fit import fit_models
from advisor.transfer import CLASSES, class_work
from tests.synthetic import SQUARES_GRID, gpu_specs, synthetic_records, with_sources

H100, H200 = "h100-sxm-80gb", "h200-sxm-141gb"
# seconds per unit of work on the H200: the law the synthetic profiles follow
LAW = {"denoise_step": {"gemm": 1.2e-3, "attention": 1.7e-3, "convolution": 0.0,
                        "elementwise": 1.6e-5},
       "text_encode": {"gemm": 5e-3, "attention": 7e-4, "convolution": 0.0,
                       "elementwise": 7e-3},
       "vae_decode": {"gemm": 0.0, "attention": 1.5e-11, "convolution": 1.2e-3,
                      "elementwise": 6e-8}}


@pytest.fixture(scope="module")
def models():
    specs = gpu_specs()
    records = with_sources(synthetic_records(grid=SQUARES_GRID, noise=0.0))
    add_profiles(records, specs, H200)
    return fit_models(records, specs), specs


def add_profiles(records: list[dict], specs, gpu: str, scale: float = 1.0) -> None:
    """Op-class profiles following `scale` x LAW on the records of `gpu`."""
    for r in records:
        if r["gpu"]["catalog_id"] != gpu:
            continue
        row = make_row(specs[gpu], Config.from_record(r["config"]))
        r["results"]["profile"] = {stage: {
            "wall_s": 1.0, "busy_s": None, "kernels": None,
            "class_s": {k: scale * LAW[stage][k] * class_work(row, stage)[k] for k in CLASSES}
            | {"other": None}} for stage in LAW}


def test_class_coefficients_are_the_profiles_law(models):
    m, _ = models
    assert list(m.transfer) == [H200] and m.transfer[H200].n_profiles == 6
    for stage, law in LAW.items():
        coef = m.transfer[H200].coefs[(stage, ("bf16", "native", False))]
        for k in CLASSES:
            assert coef[k] == pytest.approx(law[k], rel=1e-9, abs=1e-15)


def test_each_class_scales_by_its_own_rate(models):
    m, specs = models
    t = m.transfer[H200]
    gemm, _, bandwidth, fp32 = t.rates[H200]
    rho = t.rho("rtx-4090")
    assert rho["gemm"] == rho["attention"] == pytest.approx(gemm / specs["rtx-4090"].gemm_tflops)
    assert rho["elementwise"] == pytest.approx(
        t.beta * bandwidth / specs["rtx-4090"].bandwidth_gbs
        + (1 - t.beta) * fp32 / specs["rtx-4090"].tflops["fp32"])
    assert t.rho(H200) == dict.fromkeys(CLASSES, pytest.approx(1.0))
    row = make_row(specs["rtx-4090"], Config(1024, 1024))
    classes = t.seconds(row, "denoise_step")
    assert t.stage_s(row, H200, "denoise_step", 1.0) - 1.0 == pytest.approx(
        sum(classes[k] * (rho[k] - 1) for k in CLASSES))


def test_an_unprobed_gpu_is_predicted_class_by_class_and_says_so(models):
    m, _ = models
    pred = m.predict("rtx-4090", Config(1024, 1024))
    assert pred.source == "transferred"
    assert pred.source_detail.startswith(f"from {H100}: per-class transfer from 6 op-class "
                                         f"profiles of {H200}")
    assert f"; from {H200}: per-class" in pred.source_detail
    assert "160 TFLOP/s (measured, cited in the catalog)" in pred.source_detail
    assert m.predict(H100, Config(768, 768)).source_detail.startswith("fitted")
    # offload and fp32 keep the roofline transfer
    assert not m.predict("rtx-4090", Config(1024, 1024, offload="model")).source_detail \
        .startswith("per-class")
    slower = m.predict("rtx-3090", Config(1024, 1024))  # fewer achieved TFLOP/s: slower
    assert slower.latency.denoise_step_s > pred.latency.denoise_step_s


def test_without_profiles_there_is_no_class_transfer():
    specs = gpu_specs()
    records = with_sources(synthetic_records(grid=SQUARES_GRID[2:4]))
    assert fit_models(records, specs).transfer == {}


def test_a_config_profiled_on_two_machines_is_one_beta_estimate(models):
    m, specs = models
    n = int(m.transfer[H200].beta_basis.split("median of ")[1].split()[0])
    records = copy.deepcopy(m.records)
    again = [copy.deepcopy(r) for r in records if (r.get("results") or {}).get("profile")]
    for r in again:
        r["gpu"]["uuid"] = "GPU-second"
    twice = fit_models(records + again, specs).transfer[H200]
    assert twice.n_profiles == 2 * m.transfer[H200].n_profiles
    assert twice.beta_basis.startswith(f"median of {n} profiled configs")
    assert twice.beta == pytest.approx(m.transfer[H200].beta, rel=0.01)  # the refit weighs repeats


def test_a_stage_takes_the_larger_of_host_issue_and_gpu_time(models):
    """With launch counts in the profiles, the host's issue time H = launches x (a host-paced
    stage's timed seconds / its launches) and t(target) = t(ref) + max(H, B(target)) -
    max(H, B(ref)); at a host-bound shape a slower GPU gains less than the class sum says."""
    m, specs = models
    records = copy.deepcopy(m.records)
    for r in records:
        profile = (r.get("results") or {}).get("profile")
        if not profile:
            continue
        small = r["config"]["height"] == 512 and r["config"]["batch"] == 1
        for stage, window in profile.items():
            busy = sum(window["class_s"][k] for k in CLASSES)
            window.update(kernels=2000.0, busy_s=busy, wall_s=busy * (3 if small else 1.05))
    t = fit_models(records, specs).transfer[H200]
    timed = [r["results"]["denoise_step_s"] for r in records if r["gpu"]["catalog_id"] == H200
             and r["config"]["height"] == 512 and r["config"]["batch"] == 1]
    row = make_row(specs["rtx-3090"], Config(512, 512))
    host = t.host_s(row, "denoise_step")
    assert host == pytest.approx(float(np.median(timed)))  # 2000 launches x timed / 2000
    classes = t.seconds(row, "denoise_step")
    busy = lambda gpu: sum(classes[k] * rate for k, rate in t.rho(gpu).items())
    assert busy(H200) < host < busy("rtx-3090")  # host-paced on the H200, not on the 3090
    assert t.stage_s(row, H200, "denoise_step", 1.0) - 1.0 == pytest.approx(busy("rtx-3090") - host)
    assert t.stage_s(row, H200, "denoise_step", 1.0) - 1.0 < busy("rtx-3090") - busy(H200)
    # a fitted reference time under the host's issue time (the GPU busy all of it): the host
    # takes at most that time, so the target is its own busy time, not less
    assert t.stage_s(row, H200, "denoise_step", busy(H200)) == pytest.approx(busy("rtx-3090"))
    big = make_row(specs["rtx-3090"], Config(1536, 1536))  # GPU-bound on both: the class sum
    classes = t.seconds(big, "denoise_step")
    assert t.stage_s(big, H200, "denoise_step", 1.0) - 1.0 == pytest.approx(
        busy("rtx-3090") - busy(H200))
    assert "a stage takes the larger of host issue and GPU time" in t.basis("rtx-3090")


def test_each_profiled_gpu_is_a_reference_with_its_own_profiles(models):
    m, specs = models
    records = copy.deepcopy(m.records)
    add_profiles(records, specs, H100, scale=2.0)
    both = fit_models(records, specs)
    assert sorted(both.transfer) == [H100, H200]
    coef = both.transfer[H100].coefs[("denoise_step", ("bf16", "native", False))]
    assert coef["gemm"] == pytest.approx(2 * LAW["denoise_step"]["gemm"])
    detail = both.predict("rtx-4090", Config(1024, 1024)).source_detail
    assert f"from {H100}: per-class transfer from" in detail and f"profiles of {H100}" in detail
    assert f"from {H200}: per-class transfer from 6 op-class profiles of {H200}" in detail
