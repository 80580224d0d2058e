"""The one `fits` rule (advisor.memory_rule) on its own and on the shipped measurements."""
from __future__ import annotations

import pytest

from advisor.contract import Config
from advisor.memory_rule import Outcome, needed_gb, verdict


def test_needed_is_the_minimum_cap_plus_the_larger_of_margin_and_context():
    assert needed_gb(20.0, 0.7, margin_gb=1.0) == 21.0
    assert needed_gb(20.0, 0.7, margin_gb=0.5) == 20.7


def test_measurements_decide_before_the_prediction():
    ran = Outcome(Config(1024, 1024, 32), "ok", "a.jsonl:1")
    oom = Outcome(Config(2048, 2048, 8), "oom", "a.jsonl:2")
    other_setting = Outcome(Config(512, 512, 1, precision="fp16"), "oom", "a.jsonl:3")
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
def shipped(tmp_path_factory):
    from advisor.cache import load_models

    return load_models(cache_dir=tmp_path_factory.mktemp("cache"))


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
