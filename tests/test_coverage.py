"""Caveats of a prediction beyond its evidence, and the step counts a prediction is refused at."""
from __future__ import annotations

import json

import pytest

from advisor import ARCH_DIR
from advisor.contract import MAX_STEPS, Config
from advisor.coverage import Probed, extrapolation
from advisor.errors import AdvisorError
from advisor.features import check_config
from tests.synthetic import make_record

PROBED = Probed.of([make_record(height=h, width=h) for h in (512, 1024)])


def test_steps_outside_the_probed_ones_are_a_caveat():
    assert PROBED.steps == (9, 9)
    assert extrapolation(Config(1024, 1024), PROBED) == ""
    for steps in (4, 50):
        why = extrapolation(Config(1024, 1024, steps=steps), PROBED)
        assert f"{steps} steps, where the probed runs had 9" in why


def test_more_steps_than_the_scheduler_has_are_refused():
    scheduler = json.loads((ARCH_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert MAX_STEPS == scheduler["num_train_timesteps"]
    check_config(Config(1024, 1024, steps=MAX_STEPS))
    with pytest.raises(AdvisorError, match="steps: expected at most 1000"):
        check_config(Config(1024, 1024, steps=1_000_000))
