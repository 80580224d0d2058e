"""Latency intervals that hold on another machine, and predictions that keep the order of the
work: the machine spread in every interval (Models.machine_bands), the unprobed-architecture
term (ArchitectureWidth), and "a larger config of a setting is never faster" over every catalog
GPU and setting of the shipped models."""
from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest

from advisor.contract import ATTENTIONS, OFFLOADS, PRECISIONS, Config
from advisor.errors import AdvisorError
from advisor.features import check_config
from advisor.intervals import PRIOR_HALF_WIDTH, ArchitectureWidth, MachineBand, machine_bands
from advisor.records import machine_log_ratios
from tests.synthetic import make_record, make_results

SIDES = (512, 640, 768, 1024, 1280, 1536, 2048)
BATCHES = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def shipped():
    """The shipped models, from the session's model cache (tests/conftest.py)."""
    from advisor.cache import load_models

    return load_models()


def _run(total_s: float, uuid: str, height: int = 1024, batch: int = 1) -> dict:
    record = make_record(results=make_results(denoise_step_s=total_s / 9, vae_decode_s=0.0,
                                              text_encode_s=0.0),
                         height=height, width=height, batch=batch)
    record["gpu"]["uuid"] = uuid
    return record


def test_machine_ratios_compare_each_machine_with_the_others_median():
    records = [_run(1.0, "GPU-a"), _run(1.0, "GPU-a"), _run(1.1, "GPU-b"), _run(0.9, "GPU-c"),
               _run(0.5, "GPU-a", height=512), _run(0.4, "GPU-b", height=512),
               _run(2.0, "GPU-a", height=2048)]  # one machine only: no ratio
    ratios = machine_log_ratios(records)
    assert sorted(ratios["compute_bound"]) == pytest.approx(
        sorted([math.log(1.0 / 1.0), math.log(1.1 / 0.95), math.log(0.9 / 1.05)]))
    assert sorted(ratios["host_bound"]) == pytest.approx(
        sorted([math.log(0.5 / 0.4), math.log(0.4 / 0.5)]))
    band = machine_bands(records)["host_bound"]
    assert band.bounds == pytest.approx((math.log(0.8), math.log(1.25)))


def test_machine_band_widens_in_quadrature_and_never_narrows():
    band = MachineBand("compute_bound", (-0.06, 0.05), 40)
    lo, hi = band.widen(-0.03, 0.04)
    assert lo == pytest.approx(-math.hypot(0.03, 0.06)) and hi == pytest.approx(
        math.hypot(0.04, 0.05))
    assert band.widen(0.0, 0.0) == pytest.approx((-0.06, 0.05))


def test_architecture_width_is_the_prior_until_points_update_it():
    assert ArchitectureWidth.of("8.0", []).half_width == pytest.approx(PRIOR_HALF_WIDTH)
    close = ArchitectureWidth.of("8.9", [("a", 0.02), ("b", -0.01)])
    far = ArchitectureWidth.of("12.1", [("c", 0.41)])
    assert close.half_width < PRIOR_HALF_WIDTH < far.half_width
    # two prior points of variance (0.25 / z)^2 and one of 0.41^2
    assert far.half_width == pytest.approx(1.6449 * math.sqrt(
        (2 * (0.25 / 1.6449) ** 2 + 0.41 ** 2) / 3))
    assert "c +51%" in far.words("Blackwell") and "12.1" in far.words("Blackwell")


def test_every_interval_of_the_shipped_models_carries_the_machine_spread(shipped):
    bands = shipped.machine_bands
    assert set(bands) == {"compute_bound", "host_bound"}
    for gpu, config in (("h100-sxm-80gb", Config(1024, 1024)), ("h200-sxm-141gb", Config(512, 512)),
                        ("h100-sxm-80gb", Config(1280, 1024)), ("rtx-4090", Config(1024, 1024))):
        pred = shipped.predict(gpu, config)
        lo, hi = (math.log(v / pred.latency.total_s) for v in pred.latency.interval_s)
        band = bands[config.regime()]
        assert lo <= band.bounds[0] + 1e-9 and hi >= band.bounds[1] - 1e-9, (gpu, config)
        assert "spread between machines" in pred.latency.basis


def test_predictions_take_the_widths_calibration_sets_after_earlier_predictions(shipped):
    """Interval widths are kept per key between predictions (Models._interval_width): new
    calibrated widths (Models.recalibrate, as advisor.calibration sets them after predicting)
    apply to every later prediction, on a probed GPU and on an unprobed architecture."""
    from advisor.cache import dumps, loads

    models = loads(dumps(shipped), shipped.model_version.removeprefix("fit:"))
    queries = [("h100-sxm-80gb", Config(1280, 1024)), ("rtx-4090", Config(1024, 1024))]
    before = [p.latency.interval_s for p in models.predict_many(queries)]
    wider = {kind: replace(iv, fitted=(iv.fitted[0] - 0.5, iv.fitted[1] + 0.5),
                           transferred=iv.transferred and (iv.transferred[0] - 0.5,
                                                           iv.transferred[1] + 0.5))
             for kind, iv in models.intervals.items()}
    models.recalibrate(intervals=wider)
    after = [p.latency.interval_s for p in models.predict_many(queries)]
    for (lo, hi), (wide_lo, wide_hi) in zip(before, after):
        assert wide_lo < lo and wide_hi > hi
    models.recalibrate(published_misses={"8.9": [("a published point", 0.9)]})
    far = models.predict("rtx-4090", Config(1024, 1024)).latency
    assert far.interval_s[1] > after[1][1] and "a published point" in far.basis


def _settings(models, gpu_id: str):
    """Every setting the models answer for on this GPU, as a 1024x1024 config."""
    for precision, compile_, attention, offload in itertools.product(
            PRECISIONS, (False, True), ATTENTIONS, OFFLOADS):
        config = Config(1024, 1024, precision=precision, compile=compile_, attention=attention,
                        offload=offload)
        try:
            check_config(config)  # e.g. a quantized precision with offload
        except AdvisorError:
            continue
        if models.refusal(gpu_id, config) is None:
            yield config


def test_latency_never_falls_as_pixels_or_batch_grow_on_any_gpu_or_setting(shipped):
    falls = []
    grid = [(side, b) for side in SIDES for b in BATCHES]
    for gpu in shipped.specs:  # one predict_many per GPU: every setting it runs, every size
        settings = list(_settings(shipped, gpu))
        preds = iter(shipped.predict_many(
            [(gpu, replace(setting, height=side, width=side, batch=b))
             for setting in settings for side, b in grid]))
        for setting in settings:
            total = {key: next(preds).latency.total_s for key in grid}
            for (side, b), t in total.items():
                smaller = [(s, b) for s in SIDES if s < side] + [(side, x) for x in BATCHES
                                                                 if x < b]
                worst = max(smaller, key=total.get, default=None)
                if worst and total[worst] > t * (1 + 1e-9):
                    falls.append((gpu, setting.setting.label, worst, (side, b),
                                  total[worst], t))
    assert not falls, falls[:10]
