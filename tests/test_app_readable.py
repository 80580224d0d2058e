"""What the dashboard's tables and charts say, in words a person reads: no torchao class names,
no raw field names, no "None", caveats on what they concern, charts on readable axes (the
browser test, tests/test_app_browser.py, checks the drawn pages)."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from advisor import REPO_ROOT

pytest.importorskip("plotly")


@pytest.fixture(scope="module")
def shipped():
    from advisor.cache import load_models
    from advisor.catalog import load_catalog

    return load_models(), load_catalog()


@pytest.fixture(scope="module")
def example_plan(shipped):
    from advisor.plan import recommend
    from advisor.request import Request

    models, catalog = shipped
    return recommend(Request.from_yaml(REPO_ROOT / "examples" / "request.yaml"), models, catalog)


def test_a_caveat_of_one_resolution_names_its_share_of_the_mix(example_plan):
    caveats = [c for o in example_plan.options for c in o.caveats if "host-bound" in c]
    assert caveats, "the example mix has 10% of 512x512 requests: host-bound on some GPU"
    assert all(c.startswith("512x512 requests only (10% of the mix): host-bound")
               for c in caveats)


def test_plan_tables_say_things_in_words(example_plan):
    from advisor.app.plan_results import lossy_frame, lossy_markdown, options_frame

    lossy = lossy_frame(example_plan)
    shown = lossy[["precision", "what", "option", "setting"]].astype(object)
    assert not shown.isin(["None", "nan"]).any().any()
    assert set(lossy.what) <= {"cheapest with it", "on the chosen GPU", "no option"}
    text = lossy_markdown(example_plan)
    assert "Config" not in text and "e4m3 weights" in text
    options = options_frame(example_plan.options, example_plan.request)
    assert not options.price_source.str.contains("usd_per").any()
    assert options.price_source.str.contains("cloud price per GPU-hour").any()


def test_fleet_chart_has_plain_axes_and_marks_the_requested_demand():
    from advisor.app.charts import fleet_figure

    fleet = pd.DataFrame({"option": ["a"] * 3 + ["b"] * 3,
                          "peak_img_per_s": [0.5, 1.0, 2.0] * 2,
                          "total_gpus": [2, 3, 6, 9, 10, 20]})
    fig = fleet_figure(fleet, peak_img_per_s=1.0)
    assert fig.layout.xaxis.type in (None, "linear") and fig.layout.yaxis.type in (None, "linear")
    assert list(fig.layout.xaxis.tickvals) == [0.5, 1.0, 2.0]
    assert fig.layout.xaxis.title.text == "peak demand (images/s)"
    marks = [s for s in fig.layout.shapes if s.x0 == s.x1 == 1.0]
    assert len(marks) == 1
    assert any("your peak demand: 1 images/s" in a.text for a in fig.layout.annotations)


def test_memory_band_stays_past_a_card_capacity(shipped):
    from advisor.app.explore import curve_queries, predicted_frame
    from advisor.contract import Setting

    models, _ = shipped
    f = predicted_frame(models, curve_queries("resolution", "rtx-4090", Setting(), 1024, 1024, 1))
    over, within = f[f.peak_memory_gb > f.capacity_gb], f[f.peak_memory_gb <= f.capacity_gb]
    assert len(over) and len(within)
    assert (over.memory_hi_gb > over.peak_memory_gb * 1.05).all()  # a band, not a line
    assert (within.memory_hi_gb <= within.capacity_gb + 1e-9).all()  # NVML reads the card


def test_load_test_tables_give_gpu_busy_in_percent_and_name_memory_series():
    from advisor.app.loadtests import shipped as shipped_runs
    from advisor.app.loadtests import soak_lines, steady_note, summary_frame

    docs, _ = shipped_runs()
    frame = summary_frame(docs)
    http = frame.utilization.isna()  # an endpoint's GPU busy time is not seen from the client
    assert (frame.utilization_pct[~http] == 100 * frame.utilization[~http]).all()
    assert frame.utilization_pct[http].isna().all()
    assert (frame.steady_utilization_pct == 100 * frame.steady_utilization).all()
    soak = next(d for d in docs if d.get("soak"))
    lines = soak_lines(soak)
    assert len(lines) == len(soak["soak"]["verdict"])
    assert not [line for line in lines if re.match(r"[a-z]+_[a-z_]+:", line)]
    assert lines[0].startswith("torch allocated: ")
    assert f"{soak['predicted_steady']['p95_s']:.2f} s" in steady_note(soak)
    assert steady_note({"predicted_steady": None}) == ""


def test_validation_and_utilization_names_are_words():
    from advisor.app.charts import residuals_figure, utilization_figure

    residuals = pd.DataFrame({"target": ["total_s"] * 2, "split": ["kfold"] * 2,
                              "measured": [1.0, 2.0], "error_pct": [1.0, -2.0],
                              "gpu": ["g"] * 2, "config": ["c"] * 2, "record": ["r"] * 2})
    fig = residuals_figure(residuals, "total_s")
    assert fig.layout.xaxis.title.text == "measured latency of one batch (s, log)"
    util = pd.DataFrame({"config": ["c"], "gpu_util_pct": [99.0], "mfu_pct": [38.0],
                         "achieved_tflops": [380.0]})
    assert utilization_figure(util).layout.yaxis.title.text == "percent"


def test_column_widths_follow_the_longest_text():
    from app_pages.common import width_for

    short, long = width_for(["NVIDIA L4"]), width_for(["NVIDIA RTX 6000 Ada Generation"])
    assert 50 <= short < long < 400
    assert width_for([], "a header of some length") > width_for([], "GPU")
    assert width_for(["x" * 1000]) == 1000  # Streamlit's widest column
