"""Published third-party measurements: loading, and the `published` validation split."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from advisor.contract import Config
from advisor.errors import AdvisorError
from advisor.published import load_published
from advisor.validation import miss_interval, published_split
from tests.fake_models import FakeModels


def test_shipped_points_load_and_the_trusted_ones_are_scoreable():
    points = load_published()
    assert len({p.id for p in points}) == len(points)
    scored = [p for p in points if p.scored]
    assert scored and all(p.trusted and p.gpu and p.config for p in scored)
    rtx = next(p for p in points if p.id == "mrdbourke-rtx4090-diffusers-bf16-1024-b1")
    assert rtx.config == Config(1024, 1024, 1, steps=9) and rtx.seconds_per_image == 4.8713
    # quantized and unknown-precision points are kept for the record, never modelled
    assert any(p.config is None and not p.scored for p in points)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "expected a mapping with a `points` list"),
    ("points: [7]", "points[0]: expected a mapping, got 7"),
    ("points: [{id: a}]", "points[0] (a): trusted: expected bool"),
    ("points: [{id: a, trusted: true, seconds_per_image: {value: -3}}]",
     "points[0] (a): seconds_per_image.value: expected a number > 0, got -3"),
    ("points: [{id: a, trusted: true, seconds_per_image: {value: '4 s'}}]", "got '4 s'"),
])
def test_a_malformed_file_names_the_point_and_field(tmp_path, text, message):
    path = tmp_path / "points.yaml"
    path.write_text(text)
    with pytest.raises(AdvisorError, match=re.escape(message)):
        load_published(path)


def test_the_split_scores_end_to_end_and_per_forward_figures(tmp_path):
    path = tmp_path / "points.yaml"
    path.write_text("""points:
  - {id: e2e, catalog_id: rtx-4090, trusted: true, precision: bf16, height: 1024, width: 1024,
     batch: 2, transformer_forwards: {count: 9}, seconds_per_image: {value: 1.0}}
  - {id: step, catalog_id: rtx-4090, trusted: true, precision: bf16, height: 512, width: 512,
     batch: 1, transformer_forwards: {count: 9}, seconds_per_forward: {value: 0.1}}
  - {id: gguf, catalog_id: rtx-4090, trusted: false, precision: gguf-q4, height: 1024,
     width: 1024, batch: 1, transformer_forwards: {count: 9}, seconds_per_image: {value: 9.0}}
""")
    models = FakeModels()
    split = published_split(models, load_published(path))
    assert split["n"] == 2 and split["points_total"] == 3 and split["untrusted"] == 1
    e2e, step = split["rows"]
    pred = models.predict("rtx-4090", Config(1024, 1024, 2))
    assert e2e["predicted"] == pytest.approx(pred.latency.total_s / 2)
    assert e2e["error_pct"] == pytest.approx(100 * (pred.latency.total_s / 2 - 1.0))
    one = models.predict("rtx-4090", Config(512, 512, 1))
    assert step["figure"] == "s/forward"
    assert step["predicted"] == pytest.approx(one.latency.denoise_step_s)
    lo, hi = step["interval"]
    assert lo < step["predicted"] < hi and step["inside"] == (lo <= 0.1 <= hi)
    assert split["mape"] == pytest.approx((abs(e2e["error_pct"]) + abs(step["error_pct"])) / 2)
    assert split["by_gpu"] == {"rtx-4090": split["mape"]}


def test_miss_interval_is_a_t_prediction_interval_holding_zero():
    misses = [-0.03, 0.22, 0.25, 0.01]  # log measured / predicted
    lo, hi = miss_interval(misses)
    half = 2.3534 * np.std(misses, ddof=1) * math.sqrt(1 + 1 / 4)  # t(0.95, 3 dof) = 2.3534
    assert (lo, hi) == pytest.approx((np.mean(misses) - half, np.mean(misses) + half), abs=1e-4)
    assert lo < min(misses) and hi > max(misses)  # wider than the range, which holds only 60%
    assert miss_interval([0.4]) == (0.0, 0.4) and miss_interval([-0.2]) == (-0.2, 0.0)
    assert miss_interval([0.3, 0.3])[0] == 0.0  # the interval always holds "no miss"


def test_transferred_intervals_are_at_least_the_published_misses(tmp_path):
    """A GPU of an architecture never probed gets an interval at least as wide as the
    prediction interval of the misses on the published points; the published split itself
    widens each point by the others only."""
    from advisor.calibration import fit_calibrated
    from tests.synthetic import SQUARES_GRID, gpu_specs, synthetic_records, with_sources

    specs = gpu_specs()
    records = with_sources(synthetic_records(grid=SQUARES_GRID))
    plain = fit_calibrated(records, specs)
    guess = plain.predict("rtx-4090", Config(1024, 1024)).latency.total_s
    path = tmp_path / "points.yaml"
    path.write_text(f"""points:
  - {{id: far, catalog_id: rtx-4090, trusted: true, precision: bf16, height: 1024, width: 1024,
     batch: 1, transformer_forwards: {{count: 9}}, seconds_per_image: {{value: {3 * guess}}}}}
  - {{id: near, catalog_id: l40s-48gb, trusted: true, precision: bf16, height: 1024,
     width: 1024, batch: 1, transformer_forwards: {{count: 9}},
     seconds_per_image: {{value: {plain.predict("l40s-48gb", Config(1024, 1024)).latency.total_s}}}}}
""")
    points = load_published(path)
    widened = fit_calibrated(records, specs, published=points)
    assert widened.n_published == 2
    point = widened.predict("rtx-4090", Config(1024, 1024)).latency.total_s
    far_miss = math.log(3 * guess / point)
    assert widened.published_misses == pytest.approx(miss_interval([far_miss, 0.0]), rel=1e-6)
    pred = widened.predict("rtx-4090", Config(1024, 1024))
    assert pred.latency.interval_s[1] == pytest.approx(
        pred.latency.total_s * math.exp(widened.published_misses[1]), rel=1e-6)
    assert "misses of 2 published third-party measurements" in pred.latency.basis
    probed = widened.predict("h100-sxm-80gb", Config(768, 768))
    assert "published" not in probed.latency.basis
    split = published_split(plain, points)
    far, near = split["rows"]
    assert not far["inside"]  # the other point missed by nothing: no widening from it
    assert near["interval"][1] == pytest.approx(near["predicted"] * 3, rel=1e-6) and near["inside"]
    assert "prediction interval of the other points' misses" in split["description"]
