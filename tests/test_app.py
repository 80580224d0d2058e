"""The dashboard under streamlit's AppTest: every page renders, reacts to input, survives bad
uploads; and the upload parsers it relies on."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from advisor import REPO_ROOT
from advisor.app.claim import claim_sources, claim_tables
from advisor.app.explore import BATCHES
from advisor.app.plan_form import form_from_request, request_from_form, request_from_upload
from advisor.app.plan_results import plan_yaml
from advisor.app.uploads import (
    MAX_UPLOAD_MB, parse_records_upload, parse_yaml_mapping, upload_text,
)
from advisor.contract import QUALITY_CAVEAT, QUANTIZATIONS
from advisor.errors import AdvisorError
from advisor.request import Request
from tests.synthetic import make_record

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

APP = str(REPO_ROOT / "app_streamlit.py")
EXAMPLE_REQUEST = REPO_ROOT / "examples" / "request.yaml"
TIMEOUT_S = 120


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest, key: str):
    """The table the page drew with app_pages.common.table or text_table(key, ...)."""
    box = at.container(key)
    return box.dataframe[0].value if len(box.dataframe) else box.table[0].value


# --------------------------------------------------------------------------- server settings


def test_app_command_binds_localhost_and_limits_uploads():
    from advisor.cli import build_parser
    from advisor.commands.app import streamlit_command

    args = build_parser().parse_args(["app"])
    command = streamlit_command(args.port, args.host)
    setting = dict(zip(command[2::2], command[3::2]))  # after: run APP
    assert setting["--server.address"] == "localhost"
    assert setting["--server.maxUploadSize"] == str(MAX_UPLOAD_MB)
    assert setting["--server.headless"] == "true"


# --------------------------------------------------------------------------- upload parsers


def test_upload_text_limits():
    with pytest.raises(AdvisorError, match="over the 1 MB limit"):
        upload_text("big.jsonl", b"x" * 1_000_001, max_mb=1)
    with pytest.raises(AdvisorError, match="empty"):
        upload_text("e.yaml", b"  \n")
    with pytest.raises(AdvisorError, match="not UTF-8"):
        upload_text("bin.yaml", b"\x80\x81 pickle")


def test_parse_yaml_mapping_is_safe_and_line_numbered():
    with pytest.raises(AdvisorError, match="line 2"):
        parse_yaml_mapping("r.yaml", b"a: 1\n  b: 2\n")
    with pytest.raises(AdvisorError):
        parse_yaml_mapping("evil.yaml", b"!!python/object/apply:os.system ['true']\n")
    with pytest.raises(AdvisorError, match="mapping"):
        parse_yaml_mapping("list.yaml", b"- 1\n- 2\n")
    assert parse_yaml_mapping("ok.yaml", b"demand: 3\n") == {"demand": 3}


def test_an_uploaded_alias_bomb_is_refused_fast():
    from tests.test_inputs import BOMB

    start = time.perf_counter()
    with pytest.raises(AdvisorError, match="bomb.yaml: the YAML expands to more than"):
        request_from_upload("bomb.yaml", BOMB.encode())
    assert time.perf_counter() - start < 1.0


def test_parse_records_upload_names_upload_and_line():
    good = json.dumps(make_record())
    data = "\n".join([good, "{not json", json.dumps({"schema_version": 1}), good]).encode()
    records, problems = parse_records_upload("../my gpu.jsonl", data)
    assert [r["_source"] for r in records] == ["../my gpu.jsonl:1", "../my gpu.jsonl:4"]
    assert problems[0].startswith("../my gpu.jsonl:2: corrupt JSON")
    assert problems[1].startswith("../my gpu.jsonl:3: ")


def test_request_form_round_trip():
    request = Request.from_yaml(EXAMPLE_REQUEST)
    form = form_from_request(request)
    assert request_from_form(form, request.to_dict()).to_dict() == request.to_dict()
    form["demand"], form["demand_unit"] = 2, "images/min"
    assert request_from_form(form, request.to_dict()).images_per_s == pytest.approx(2 / 60)


def test_request_form_names_bad_rows():
    form = form_from_request(Request.from_yaml(EXAMPLE_REQUEST))
    form["resolutions"].append({"height": 512, "width": None, "share_pct": 10})
    with pytest.raises(AdvisorError, match="row 4"):
        request_from_form(form)
    form["resolutions"].pop()
    form["resolutions"][0]["share_pct"] = 99
    with pytest.raises(AdvisorError, match="resolutions"):
        request_from_form(form)


def test_plan_yaml_loads_back(tmp_path):
    from advisor.catalog import load_catalog
    from advisor.cache import load_models
    from advisor.export import load_plan
    from advisor.plan import recommend

    request = Request.from_yaml(EXAMPLE_REQUEST)
    models, catalog = load_models(), load_catalog()
    text = plan_yaml(recommend(request, models, catalog), models, catalog, {"mine.jsonl": "{}"})
    (tmp_path / "plan.yaml").write_text(text)
    doc = load_plan(tmp_path / "plan.yaml")
    assert doc["request"].to_dict() == request.to_dict()
    assert doc["provenance"]["uploads"][0]["file"] == "mine.jsonl"
    assert request_from_upload("plan.yaml", text.encode()).to_dict() == request.to_dict()


# --------------------------------------------------------------------------- Plan page


def best_fleet(at: AppTest) -> int:
    return int(table(at, "plan_options").total_gpus.iat[0])


def test_plan_page_renders_answer():
    at = open_page("plan")
    assert at.success and "×" in at.success[0].value
    options = table(at, "plan_options")
    assert len(options) >= 1
    assert options["short_test"].str.match(r"\d+\.\d\d-\d+\.\d\d s \(\d+ (min|s), ").all()
    assert {m.label.split(" (")[0] for m in at.metric} >= {"Monthly cost", "Per 1,000 images"}
    sure = next(m.value for m in at.markdown if m.value.startswith("**How sure:**"))
    assert "How far off: " in sure and "the 90% interval of its latency runs" in sure


def test_plan_page_demand_changes_fleet():
    at = open_page("plan")
    before = best_fleet(at)
    at.number_input(key="plan_demand").set_value(at.number_input(key="plan_demand").value * 4)
    at.run()
    assert not at.exception
    assert best_fleet(at) > before


def test_plan_page_draws_the_open_chart_tab_only():
    at = open_page("plan")
    charts = {"Cost vs latency": "plan_cost_chart", "Fleet vs demand": "plan_fleet_chart",
              "Throughput per GPU": "plan_throughput_chart"}
    for tab, chart in charts.items():
        at.session_state["plan_chart_tab"] = tab
        at.run()
        assert not at.exception, at.exception
        drawn = [c.proto.id for c in at.get("plotly_chart")]
        assert len(drawn) == 1 and drawn[0].endswith(chart), (tab, drawn)
    options = table(at, "plan_options")
    assert options.reason.str.len().gt(0).all()  # every ranked row says why
    shown = " ".join(m.value for m in at.markdown)
    assert all(reason in shown for reason in options.reason)  # in full, not cut in a cell
    assert {"utilization_pct", "headroom_pct", "basis"} <= set(options.columns)
    at.session_state["plan_chart_tab"] = "Cost vs latency"
    at.run()
    frontier = table(at, "plan_frontier")  # every frontier point is listed, with its label
    assert frontier.label.str.contains("×").all() and len(frontier) >= 1
    unranked = frontier[frontier.ranking == "not ranked"]
    assert set(unranked.label).isdisjoint(options.label)
    at.session_state["plan_not_recommended_open"] = True  # a lazy expander: drawn once open
    at.run()
    assert set(table(at, "plan_not_recommended")["GPU"]).isdisjoint(options.gpu)


def test_plan_page_demand_unit_converts_the_number():
    at = open_page("plan")
    fleet, per_day = best_fleet(at), at.number_input(key="plan_demand").value
    at.sidebar.selectbox(key="plan_demand_unit").set_value("images/s").run()
    assert not at.exception, at.exception
    assert at.number_input(key="plan_demand").value == pytest.approx(per_day / 86_400)
    assert best_fleet(at) == fleet  # the same demand, said per second


def test_plan_page_keeps_the_form_across_pages():
    at = open_page("plan")
    at.number_input(key="plan_demand").set_value(1234.0).run()
    fleet = best_fleet(at)
    at.switch_page("app_pages/gpus.py").run()
    at.switch_page("app_pages/plan.py").run()
    assert not at.exception
    assert at.number_input(key="plan_demand").value == 1234.0
    assert best_fleet(at) == fleet


def test_plan_page_bad_upload_keeps_plan():
    at = open_page("plan")
    before = table(at, "plan_options").copy()
    at.sidebar.file_uploader(key="plan_upload").set_value(
        ("bad.yaml", b"demand: {images_per_s: -3}\nslo: {p95_s: 5}\n", "application/x-yaml"))
    at.run()
    assert not at.exception
    assert any("bad.yaml" in e.value and "demand.images_per_s" in e.value for e in at.error)
    assert table(at, "plan_options").equals(before)


def test_plan_page_loads_uploaded_request():
    at = open_page("plan")
    upload = b"demand: {images_per_s: 0.5}\nslo: {p99_s: 30}\ncandidates: {gpus: [l40s-48gb]}\n"
    at.sidebar.file_uploader(key="plan_upload").set_value(("r.yaml", upload, "application/x-yaml"))
    at.run()
    assert not at.exception, at.exception
    assert at.number_input(key="plan_demand").value == 0.5
    assert set(table(at, "plan_options").gpu) == {"l40s-48gb"}


def test_plan_page_price_sheet_upload_prices_a_gpu_and_shows_both_bases():
    at = open_page("plan")
    unpriced = table(at, "plan_price_needed")
    assert "l20-48gb" in set(unpriced.gpu) and unpriced.price_field.str.startswith("prices.").all()
    options = table(at, "plan_options")
    transferred = options[options.basis == "transferred"]
    assert transferred.gpus_point_upper.str.match(r"\d+ / \d+").all()
    assert transferred.probe.str.startswith("advisor probe --grid").all()
    sheet = b"prices:\n  l20-48gb: {cloud_usd_per_hour: 0.05, note: our quote}\n"
    at.sidebar.file_uploader(key="plan_price_upload").set_value(
        ("prices.yaml", sheet, "application/x-yaml"))
    at.run()
    assert not at.exception, at.exception
    assert "l20-48gb" in set(table(at, "plan_options").gpu)
    at.sidebar.file_uploader(key="plan_price_upload").set_value(
        ("bad.yaml", b"prices: {l20-48gb: {cloud_usd_per_hour: -1}}\n", "application/x-yaml"))
    at.run()
    assert any("bad.yaml" in e.value and "cloud_usd_per_hour" in e.value for e in at.error)


def test_plan_page_offers_precisions_with_the_lossy_ones_marked():
    at = open_page("plan")
    precisions = at.sidebar.multiselect(key="plan_precisions")
    assert precisions.value == ["bf16"]  # the example request: nothing lossy unless asked for
    assert {"fp8 (lossy)", "fp8-wo (lossy)", "int8-wo (lossy)", "bf16"} <= set(precisions.options)
    assert any(QUALITY_CAVEAT in c.value for c in at.sidebar.caption)  # beside the choice


def test_plan_page_says_what_each_lossy_precision_would_change():
    at = open_page("plan")
    lossy = table(at, "plan_lossy")
    assert set(lossy.precision) == set(QUANTIZATIONS)
    assert (lossy.quality == QUALITY_CAVEAT).all()
    assert any(QUALITY_CAVEAT in w.value for w in at.warning)
    shown = " ".join(m.value for m in at.markdown)
    assert all(f"- **{q}** (" in shown for q in QUANTIZATIONS)
    # allowing one lossy precision takes it out of the alternatives
    at.sidebar.multiselect(key="plan_precisions").select("int8-wo").run()
    assert not at.exception, at.exception
    assert set(table(at, "plan_lossy").precision) == {"fp8", "fp8-wo"}


def test_plan_page_bad_form_value_shows_error():
    at = open_page("plan")
    at.number_input(key="plan_slo_s").set_value(0.1).run()
    assert not at.exception
    assert at.warning or at.error  # nothing meets a 0.1 s SLO: said, not crashed
    assert len(table(at, "plan_not_recommended")) > 0  # and why, per GPU, without a click


# --------------------------------------------------------------------------- Explore page


def test_explore_page_batch_changes_curve():
    at = open_page("explore")
    assert len(at.get("plotly_chart")) >= 3
    before = table(at, "explore_numbers").copy()
    at.select_slider(key="explore_batch").set_value(4).run()
    assert not at.exception
    assert not table(at, "explore_numbers").latency_s.equals(before.latency_s)
    at.radio(key="explore_axis").set_value("batch").run()
    assert not at.exception
    assert list(table(at, "explore_numbers").batch) == list(BATCHES)


def test_explore_page_marks_a_lossy_precision_and_refuses_what_a_gpu_cannot_run():
    at = open_page("explore")
    assert "int8-wo (lossy)" in at.selectbox(key="explore_precision").options
    at.selectbox(key="explore_precision").set_value("int8-wo").run()
    assert not at.exception, at.exception
    assert any(QUALITY_CAVEAT in w.value for w in at.warning)
    at.selectbox(key="explore_gpu").set_value("a100-sxm-80gb")
    at.selectbox(key="explore_precision").set_value("fp8").run()
    assert not at.exception, at.exception
    assert any(w.value.startswith("Not predicted: ") and "8.9" in w.value for w in at.warning)


def test_explore_page_draws_the_fastest_settings_and_refuses_what_names_nothing():
    """Scope, compile mode and VAE decode are widgets: the fp8 transformer-only setting with a
    compiled channels-last VAE shows the H100's measured 1024x1024 run; a scope or mode that
    does not apply is not used."""
    import json

    from advisor import MEASUREMENTS_DIR

    record = json.loads((MEASUREMENTS_DIR / "h100-sxm-80gb-fastest.jsonl").read_text()
                        .splitlines()[0])
    assert record["config"]["quant_scope"] == "transformer" and record["config"]["batch"] == 1
    at = open_page("explore")
    at.selectbox(key="explore_gpu").set_value("h100-sxm-80gb")
    at.selectbox(key="explore_precision").set_value("fp8")
    at.toggle(key="explore_compile").set_value(True).run()  # enables the scope
    at.selectbox(key="explore_scope").set_value("transformer")
    at.selectbox(key="explore_vae").set_value((True, True)).run()
    assert not at.exception, at.exception
    numbers = table(at, "explore_numbers")
    row = numbers[(numbers.resolution == "1024x1024") & (numbers.batch == 1)].iloc[0]
    assert row.source == "measured"
    # the measured run, or the measured 768x1344 run's 0.760 s where that is more (fewer
    # pixels: a larger config is never shown faster)
    assert row.latency_s == pytest.approx(record["results"]["total_s"], rel=0.01)
    at.selectbox(key="explore_precision").set_value("bf16").run()  # the scope stays unused
    assert not at.exception, at.exception
    assert not any(w.value.startswith("Not a setting") for w in at.warning)


def test_quantized_records_are_drawn_apart_beside_the_curve():
    from advisor.app.charts import curve_figure
    from advisor.app.explore import quantized_along
    from advisor.app.measurements import records_frame
    from advisor.contract import Setting

    records = [make_record(height=s, width=s, precision=p) for s in (512, 1024)
               for p in ("bf16", "int8-wo", "fp8")]
    frame = records_frame(records)
    gpu = frame.gpu.iat[0]
    quantized = quantized_along(frame, "resolution", gpu, Setting(), 1024, 1024, 1)
    assert sorted(quantized.precision.unique()) == ["fp8", "int8-wo"] and len(quantized) == 4
    predicted = pd.DataFrame({"megapixels": [0.26, 1.05], "latency_s": [1.0, 2.0],
                              "latency_lo_s": [0.9, 1.8], "latency_hi_s": [1.1, 2.2],
                              "resolution": ["512x512", "1024x1024"], "source": "fitted"})
    measured = frame[frame.precision == "bf16"]
    figure = curve_figure(predicted, measured, "megapixels", "latency_s", "latency_lo_s",
                          "latency_hi_s", "t", "s", quantized=quantized)
    traces = {t.name: t for t in figure.data}
    assert traces["measured"].marker.symbol == "circle-open"
    for q in ("fp8", "int8-wo"):
        assert traces[f"measured {q} (lossy)"].marker.symbol == "diamond-open"
        assert len(traces[f"measured {q} (lossy)"].x) == 2
    # the lossy setting's own records are marked too
    own = curve_figure(predicted, frame[frame.precision == "int8-wo"], "megapixels", "latency_s",
                       "latency_lo_s", "latency_hi_s", "t", "s")
    assert [t.name for t in own.data if t.mode == "markers"] == ["measured (lossy)"]


# --------------------------------------------------------------------------- GPUs page


def test_gpus_page_filters():
    at = open_page("gpus")
    all_rows = len(table(at, "gpus_table"))
    at.number_input(key="gpus_min_mem").set_value(100).run()
    assert not at.exception
    assert 0 < len(table(at, "gpus_table")) < all_rows
    assert (table(at, "gpus_table").memory_gb >= 100).all()


def test_gpus_page_says_what_fits_each_card_with_its_source():
    at = open_page("gpus")
    limits = table(at, "gpus_limits")
    assert set(limits.offload) == {"none", "model", "sequential"}
    h100 = limits[(limits.gpu == "h100-sxm-80gb") & (limits.offload == "none")].iloc[0]
    assert h100.batch_1024 >= 16 and h100.batch_1024_source == "measured run"
    small = limits[limits.capacity_gb < 10]
    assert small[small.offload == "none"].batch_1024.isna().all()  # 8 GB: nothing, and why
    assert small[small.offload == "none"].batch_1024_source.str.startswith("nothing fits").all()
    at.number_input(key="gpus_min_mem").set_value(100).run()
    assert (table(at, "gpus_limits").capacity_gb >= 100).all()


def test_gpus_page_shows_cards_without_bf16_at_fp16_the_precision_they_run():
    at = open_page("gpus")
    rows = table(at, "gpus_table").set_index("id")
    assert rows.precision["t4-16gb"] == rows.precision["v100-sxm2-32gb"] == "fp16"
    assert rows.img_per_s["v100-sxm2-32gb"] > 0  # 32 GB: fits, and runs at fp16
    assert rows.precision["h100-sxm-80gb"] == "bf16"
    assert any(c.value.startswith("Predicted at fp16, the precision they run (the catalog lists "
                                  "no dense bf16 rate for them): ") and "NVIDIA T4" in c.value
               for c in at.caption)
    limits = table(at, "gpus_limits")
    assert set(limits[limits.gpu == "t4-16gb"].precision) == {"fp16"}


def test_gpus_page_at_a_lossy_precision_says_which_cards_cannot_run_it():
    at = open_page("gpus")
    at.selectbox(key="gpus_precision").set_value("fp8").run()
    assert not at.exception, at.exception
    assert any(QUALITY_CAVEAT in c.value for c in at.caption)
    rows = table(at, "gpus_table").set_index("id")
    assert rows.note["a100-sxm-80gb"].startswith("not modelled at fp8: fp8 needs fp8 support")
    assert set(table(at, "gpus_limits").offload) == {"none"}  # never run with offload


def test_gpus_page_resolution_changes_throughput():
    at = open_page("gpus")
    before = table(at, "gpus_table").set_index("id")
    at.select_slider(key="gpus_side").set_value(2048).run()
    assert not at.exception
    after = table(at, "gpus_table").set_index("id")
    both = after.img_per_s.notna() & before.img_per_s.notna()
    assert both.any() and (after.img_per_s[both] < before.img_per_s[both]).all()
    # a card the larger image does not fit shows no speed, and says why
    unfit = after[after.fits == False]  # noqa: E712 (None: not modelled)
    assert len(unfit) and unfit.img_per_s.isna().all() and unfit.latency_s.isna().all()
    assert unfit.note.str.startswith("does not fit: ").all()


# --------------------------------------------------------------------------- Check a claim page


def quantities(compute) -> dict:
    return dict(zip(compute.quantity, compute.value))


def test_claim_tables_show_the_arithmetic():
    from advisor.catalog import load_catalog
    from advisor.claims import check_claim

    result = check_claim(load_catalog().get("a100-pcie-40gb"), 1024, 1024, steps=8, batch=8,
                         images_per_second=3.27)
    compute, memory = claim_tables(result)
    q = quantities(compute)
    implied = q["implied TFLOP/s (TFLOP per image × images/s)"]
    assert implied == pytest.approx(q["TFLOP per image: total"] * 3.27)
    peak = next(v for k, v in q.items() if k.startswith("dense "))
    assert q["implied MFU (implied / peak)"] == pytest.approx(implied / peak)
    assert len(memory) == len(result["arithmetic"]["memory_options"])
    assert memory.claimed_s_per_batch.to_numpy() == pytest.approx(8 / 3.27)
    assert set(memory.offload) == {"none", "model", "sequential"}
    sources = claim_sources(result)  # each short "from" is spelled out below the table
    assert all(f"**{label}**" in sources for label in set(compute["from"])
               - {"the claim", "arithmetic"})
    assert "`dense_tflops`" in sources  # a field name shown as code, not as prose


def test_claim_page_verdict_follows_the_claim():
    at = open_page("claim")
    assert any("IMPOSSIBLE" in e.value for e in at.error)  # 3.27 img/s on an A100 40GB
    before = quantities(table(at, "claim_compute"))
    at.number_input(key="claim_speed").set_value(0.05).run()
    assert not at.exception, at.exception
    after = quantities(table(at, "claim_compute"))
    key = "implied TFLOP/s (TFLOP per image × images/s)"
    assert after[key] == pytest.approx(before[key] * 0.05 / 3.27)
    assert not any("IMPOSSIBLE" in e.value for e in at.error)
    assert at.success or at.warning
    assert len(table(at, "claim_memory")) >= 3


def test_claim_page_bad_input_shows_error():
    at = open_page("claim")
    at.number_input(key="claim_height").set_value(1000).run()
    assert not at.exception
    assert any("Cannot check this claim" in e.value and "16" in e.value for e in at.error)


# --------------------------------------------------------------------------- Your data page


def upload_records(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="your_data_files").set_value([(name, data, "application/json")])
    return at.run()


def test_your_data_reports_bad_lines_and_uses_good_ones():
    good = [make_record(height=s, width=s) for s in (512, 768, 1024)]
    data = "\n".join([json.dumps(good[0]), "{oops", *map(json.dumps, good[1:])]).encode()
    at = upload_records(open_page("your_data"), "mine.jsonl", data)
    assert not at.exception, at.exception
    assert any("mine.jsonl:2" in e.value for e in at.error)
    assert any("3 valid record" in s.value for s in at.success)
    assert len(table(at, "your_data_compare")) == 3  # beside the shipped models' predictions
    at.toggle(key="your_data_use").set_value(True).run()
    assert not at.exception, at.exception
    at.switch_page("app_pages/plan.py").run()
    at.run()  # a second run of another page: the toggle's own widget state is gone by now
    assert not at.exception, at.exception
    assert any("Using your data" in i.value for i in at.info)
    assert len(table(at, "plan_options")) >= 1
    at.switch_page("app_pages/your_data.py").run()
    assert at.toggle(key="your_data_use").value  # drawn again as it was left


def test_your_data_bad_upload_shows_error():
    at = upload_records(open_page("your_data"), "weights.pkl.jsonl", b"\x80\x04\x95 pickle")
    assert not at.exception
    assert any("not UTF-8" in e.value for e in at.error)
    assert any("No data uploaded" in i.value for i in at.info)


def test_validation_tables_split_latency_by_regime_and_list_the_machine_spread():
    from advisor.app.explore import machine_frame, validation_frames

    total = {"mape": 3.0, "median_ape": 2.0, "max_ape": 9.0, "coverage": 90.0, "n": 10}
    host = total | {"mape": 25.0, "n": 4}
    report = {"metrics": {"kfold": {"total_s": total, "by_regime": {
                  "compute_bound": total | {"n": 6}, "host_bound": host}}},
              "residuals": [],
              "machines": {"host_bound": {"configs": [
                  {"gpu": "h200-sxm-141gb", "config": "512x512 b1 bf16 native", "machines": 3,
                   "spread_pct": 52.9}]}}}
    metrics, _ = validation_frames(report)
    assert list(metrics.target) == [
        "latency of one batch", "latency of one batch, compute-bound",
        "latency of one batch, host-bound"]
    assert metrics.set_index("target").loc["latency of one batch, host-bound", "mape"] == 25.0
    spread = machine_frame(report)
    assert spread.to_dict("records") == [{"regime": "host-bound", "gpu": "h200-sxm-141gb",
                                          "config": "512x512 b1 bf16 native", "machines": 3,
                                          "spread_pct": 52.9}]
    assert machine_frame({}).empty


def test_explore_page_shows_the_shipped_machine_spread():
    at = open_page("explore")
    assert not at.exception
    spread = table(at, "explore_machines")
    assert {"host-bound", "compute-bound"} <= set(spread.regime)
    # read from the report shipped for these data and this code, and said so
    assert any("The shipped report: data/validation/report.json.gz" in c.value
               for c in at.caption)
    assert (spread.machines >= 2).all()
