"""The one `fits` rule (advisor.memory_rule) on its own and on the shipped measurements."""
from __future__ import annotations

import pytest

from advisor.contract import Config
from advisor.memory_rule import MeasuredRun, needed_gb, verdict


def test_needed_is_the_minimum_cap_plus_the_larger_of_margin_and_context():
    assert needed_gb(20.0, 0.7, margin_gb=1.0) == 21.0
    assert needed_gb(20.0, 0.7, margin_gb=0.5) == 20.7


def test_measurements_decide_before_the_prediction():
    ran = MeasuredRun(Config(1024, 1024, 32), "ok", "a.jsonl:1")
    oom = MeasuredRun(Config(2048, 2048, 8), "oom", "a.jsonl:2")
    other_setting = MeasuredRun(Config(512, 512, 1, precision="fp16"), "oom", "a.jsonl:3")
    outcomes = [ran, oom, other_setting]
    # the same pixels x batch as the OOM, but a smaller image: the run decides, not the product
    assert verdict(Config(1024, 1024, 32), 999.0, 80.0, outcomes) == (
        True, "measured: this config ran (a.jsonl:1)")
    fits, reason = verdict(Config(1024, 1024, 16), 999.0, 80.0, outcomes)
    assert fits and "1024x1024 batch 32 ran" in reason
    fits, reason = verdict(Config(2048, 2048, 12), 1.0, 80.0, outcomes)
    assert not fits and "out of memory at 2048x2048 batch 8" in reason
    assert verdict(Config(512, 512, 1, precision="fp16"), 1.0, 80.0, outcomes)[0] is False
    unmeasured = Config(1536, 1536, 16, attention="flash")  # a family with no runs: predicted
    assert verdict(unmeasured, 20.0, 80.0, outcomes) == (True, "needs 20.0 GB, within 80.0 GB")
    assert verdict(unmeasured, 90.0, 80.0, outcomes) == (False, "needs 90.0 GB, over 80.0 GB")


@pytest.fixture(scope="module")
def shipped():
    """The shipped models, from the session's model cache (tests/conftest.py)."""
    from advisor.cache import load_models

    return load_models()


def test_every_shipped_run_fits_and_every_shipped_oom_does_not(shipped):
    queries = [(r["gpu"]["catalog_id"], Config.from_record(r["config"]))
               for r in shipped.records]
    assert any(r["status"] == "oom" for r in shipped.records)
    for record, pred in zip(shipped.records, shipped.predict_many(queries)):
        assert pred.fits == (record["status"] == "ok"), (record["_source"], pred.fits_reason)


def test_shipped_boundaries_the_old_rules_got_wrong(shipped):
    """Measured ok on the H100, and once reported as not fitting: 1024x1024 batch 32 (a
    2048x2048 batch-8 OOM has the same pixels x batch), 1536x1536 batches 8 and 12 and
    512x512 batch 64 (an NVML-peak rule in the planner)."""
    for config in (Config(1024, 1024, 32), Config(1536, 1536, 8), Config(1536, 1536, 12),
                   Config(512, 512, 64)):
        pred = shipped.predict("h100-sxm-80gb", config)
        assert pred.source == "measured" and pred.fits, (config.label(), pred.fits_reason)


def test_a_16_gb_card_runs_int8_weight_only_on_the_shipped_minimum_caps(shipped):
    """The quantized minimum caps (capped/h200-sxm-141gb.jsonl): int8-wo at 1024x1024 batch 1
    needs 13.25 GiB, so a 16 GB card runs it without offload (bf16 needs 21.6 GiB); fp8 is
    refused on an A100 (compute capability 8.0)."""
    from advisor.errors import AdvisorError

    pred = shipped.predict("rtx-4080-super", Config(1024, 1024, precision="int8-wo"))
    assert pred.fits and pred.memory.min_cap_source.startswith("capped-measured")
    assert pred.memory.min_cap_gb == pytest.approx(13.25 * 2**30 / 1e9)
    assert not shipped.predict("rtx-4080-super", Config(1024, 1024)).fits
    with pytest.raises(AdvisorError, match=r"compute capability 8\.9 .* compute capability 8\.0"):
        shipped.predict("a100-sxm-80gb", Config(1024, 1024, precision="fp8"))


# ------------------------------------------------------------------------------ minimum caps

@pytest.fixture(scope="module")
def capped_models():
    from advisor.calibration import fit_calibrated
    from advisor.features import make_row
    from tests.synthetic import (
        SQUARES_GRID, gpu_specs, min_cap_record, synthetic_records, with_sources,
    )

    specs = gpu_specs()
    records = with_sources(synthetic_records(grid=SQUARES_GRID, noise=0.0))
    models = fit_calibrated(records, specs)
    shapes = ((512, 512, 1), (768, 768, 1), (1024, 1024, 1), (1024, 1024, 2), (1280, 1280, 1))
    capped = []
    for h, w, b in shapes:
        peak = models.memory.predict([make_row(specs["h200-sxm-141gb"], Config(h, w, b))])[
            "allocated"][0] / 1024
        capped.append(min_cap_record("h200-sxm-141gb", peak, 0.3, lambda cap: [
            (cap + 1.0, "ok"), (cap - 1.0, "oom"), (cap - 0.25, "ok"), (cap - 0.25, "oom"),
            (cap, "ok")], height=h, width=w, batch=b))
    with_sources(capped, "capped.jsonl")
    return fit_calibrated(records, specs, capped=capped), records, capped, specs


def test_a_searched_config_needs_its_measured_minimum_cap_others_the_fitted_one(capped_models):
    models, _, capped, _ = capped_models
    assert models.min_cap.offsets["compute"][0] == pytest.approx(0.3 * 1024, abs=2)
    searched = models.predict("rtx-4090", Config(1024, 1024, 2))
    assert searched.memory.min_cap_gb == pytest.approx(
        capped[3]["results"]["min_cap_gib"] * 2**30 / 1e9)
    assert searched.memory.min_cap_source == "capped-measured (capped.jsonl:4)"
    fitted = models.predict("rtx-4090", Config(896, 896, 1))
    assert fitted.memory.min_cap_source.startswith("fitted")
    assert fitted.memory.needed_gb == pytest.approx(
        fitted.memory.min_cap_gb + max(1.0, fitted.memory.needed_gb - fitted.memory.min_cap_gb))


def test_the_capped_split_scores_every_trial_and_leaves_searches_out(capped_models):
    from advisor.calibration import fit_calibrated
    from advisor.validation import validation_report

    _, records, capped, specs = capped_models
    split = validation_report(records, specs, fit_calibrated, capped=capped)["capped"]
    assert split["searches"] == 5 and split["mape"] < 1.0
    rule = split["confusion"]["rule"]
    # per search: above the minimum ran (2), below it ran out (1), and the unstable band just
    # under it once ran (conservative) and once did not
    assert rule == {"runs_and_ran": 10, "unsafe_runs_but_oom": 0,
                    "conservative_oom_but_ran": 5, "oom_and_oom": 10, "not_judged": 0}
    assert len(split["pairs"]) == 25
