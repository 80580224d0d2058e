"""The endpoint overhead the planner adds: which measurement a resolution gets, and that it
lengthens every latency in the simulation without taking GPU time."""
from __future__ import annotations

import json

import numpy as np
import pytest

from advisor.loadtest.results import LOADTESTS_DIR
from advisor.overhead import DEFAULT_S, Point, overhead_s, points
from advisor.queueing import Service, Simulation, latency_floor_s, simulate

POINTS = (Point("h100-sxm-80gb", 1024, 1024, 0.20, 30, "a.json"),
          Point("h100-sxm-80gb", 1024, 1024, 0.10, 10, "b.json"),
          Point("h200-sxm-141gb", 768, 768, 0.12, 20, "c.json"))


@pytest.mark.parametrize("gpu, shape, value, words", [
    ("h100-sxm-80gb", (1024, 1024), 0.175, "measured on this GPU (a.json, b.json)"),
    ("h100-sxm-80gb", (768, 768), 0.12, "measured on h200-sxm-141gb (c.json)"),
    ("rtx-4090", (1024, 1024), 0.175, "measured on h100-sxm-80gb"),
])
def test_a_measured_resolution_gets_its_weighted_median(gpu, shape, value, words):
    seconds, basis = overhead_s(gpu, *shape, measured=POINTS)
    assert seconds == pytest.approx(value) and words in basis


def test_other_resolutions_follow_a_line_in_megapixels_and_nothing_measured_is_assumed():
    seconds, basis = overhead_s("h100-sxm-80gb", 2048, 2048, measured=POINTS)
    slope, intercept = np.polyfit([p.height * p.width / 1e6 for p in POINTS],
                                  [p.seconds for p in POINTS], 1)
    assert seconds == pytest.approx(intercept + slope * 2048**2 / 1e6)
    assert "line in megapixels" in basis
    assert overhead_s("h100-sxm-80gb", 512, 512, measured=POINTS[:1])[0] == 0.20
    assert overhead_s("h100-sxm-80gb", 512, 512, measured=()) == (
        DEFAULT_S, "assumed (no endpoint measured)")


def test_overhead_lengthens_every_latency_but_takes_no_gpu_time():
    times = ((1.0, 1.6),)
    plain = Service(times_s=times, shares=(1.0,))
    served = Service(times_s=times, shares=(1.0,), overhead_s=(0.3,))
    sim = Simulation(requests=3000, warmup=300)
    a, b = simulate(plain, 0.8, 1, 0.1, sim), simulate(served, 0.8, 1, 0.1, sim)
    assert b.p50_s == pytest.approx(a.p50_s + 0.3) and b.p95_s == pytest.approx(a.p95_s + 0.3)
    assert b.utilization == pytest.approx(a.utilization) and b.mean_wait_s == a.mean_wait_s
    assert latency_floor_s(served, 0.95) == pytest.approx(1.3)


def test_a_run_s_resolution_labels_read_width_first(tmp_path):
    """Results files label sizes width x height, as everywhere: a portrait size keeps its
    orientation."""
    doc = json.loads((LOADTESTS_DIR / "h100-served-r0.32.json").read_text())
    by_resolution = doc["endpoint"]["by_resolution"]
    by_resolution["1344x768"] = by_resolution.pop("768x768")
    (tmp_path / "run.json").write_text(json.dumps(doc))
    shapes = {(p.width, p.height) for p in points(tmp_path)}
    assert shapes == {(1024, 1024), (1344, 768)}
