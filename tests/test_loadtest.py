"""`advisor loadtest` on CPU: the live loop against the planner's simulation, bounds and Ctrl-C,
the HTTP mode against a local server (127.0.0.1 only), argument errors, results files."""
from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from advisor import queueing
from advisor.cli import main
from advisor.dispatch import replay
from advisor.errors import AdvisorError
from advisor.loadtest import arrivals, report, results, run
from advisor.loadtest.config import LoadConfig, Resolution
from tests.fake_models import FakeModels
from tests.local_http import serving

MIX = (Resolution(1024, 1024, 0.7), Resolution(512, 512, 0.3))
TIMES = {(1024, 1024): [0.50, 0.80, 1.10, 1.40], (512, 512): [0.20, 0.30, 0.40, 0.50]}
SERVICE = queueing.Service(times_s=(tuple(TIMES[(1024, 1024)]), tuple(TIMES[(512, 512)])),
                           shares=(0.7, 0.3))


def config(**kw) -> LoadConfig:
    base = dict(resolutions=MIX, max_batch=4, window_s=0.2, rate_per_s=3.0, duration_s=400.0,
                warmup_s=20.0, gpu="h200-sxm-141gb")
    return LoadConfig(**{**base, **kw})


def planner_run(times, classes, n_gpus=1, window_s=0.2):
    """Per-request finish times from queueing._run, the planner's own loop."""
    positions = [np.flatnonzero(classes == c) for c in range(2)]
    starts, ends, _ = queueing._run(times, positions, None, SERVICE, n_gpus, window_s)
    finish = np.empty(len(times))
    for c in range(2):
        pos = np.flatnonzero(classes == c)
        end = np.asarray(ends[c])
        size = end - np.concatenate(([0], end[:-1]))
        t = np.asarray(SERVICE.times_s[c])[size - 1]
        finish[pos] = np.repeat(np.asarray(starts[c]) + t, size)
    return finish


@pytest.mark.parametrize("rate,n_gpus", [(1.0, 1), (3.0, 1), (6.0, 2)])
def test_dispatcher_replay_is_the_planners_policy(rate, n_gpus):
    schedule = arrivals.poisson(config(rate_per_s=rate, duration_s=300.0))
    _, finish, _ = replay(schedule.times_s, schedule.classes, 2, 4, 0.2,
                          lambda c, k, _: SERVICE.times_s[c][k - 1], n_gpus=n_gpus)
    np.testing.assert_allclose(finish, planner_run(schedule.times_s, schedule.classes, n_gpus))


def test_live_loop_with_known_timings_reproduces_the_simulation():
    cfg = config()
    schedule = arrivals.poisson(cfg)
    clock = run.VirtualClock()
    trace = run.run_batches(schedule, cfg, run.FakeService(TIMES, clock), clock)
    assert trace.stopped == "completed"
    np.testing.assert_allclose(trace.finish_s, planner_run(schedule.times_s, schedule.classes))
    m = report.measured(trace, cfg)
    predicted, _ = report.same_arrivals(trace, cfg, SERVICE)
    for key in ("p50_s", "p95_s", "p99_s"):
        assert predicted[key] == pytest.approx(m[key])
    assert predicted["request_error_p90_pct"] < 1e-6
    assert m["p95_ci_s"][0] <= m["p95_s"] <= m["p95_ci_s"][1]
    assert 0.3 < m["utilization"] < 1.0
    assert set(m["batch_size_histogram"]) <= {"1", "2", "3", "4"}


def test_replay_with_the_runs_own_service_times_isolates_the_policy():
    # A GPU 8% slower than fitted: the fitted replay is off, the run's own times are not.
    cfg = config()
    schedule = arrivals.poisson(cfg)
    slow = {shape: [1.08 * t for t in times] for shape, times in TIMES.items()}
    clock = run.VirtualClock()
    trace = run.run_batches(schedule, cfg, run.FakeService(slow, clock), clock)
    m = report.measured(trace, cfg)
    fitted, _ = report.same_arrivals(trace, cfg, SERVICE)
    own_service, basis = report.measured_service(trace, cfg, SERVICE)
    own, _ = report.same_arrivals(trace, cfg, own_service)
    assert fitted["p95_error_pct"] < -5
    assert own["p95_s"] == pytest.approx(m["p95_s"]) and own["request_error_p90_pct"] < 1e-6
    seen = basis["from_run"]["1024x1024"]
    assert basis["service_s"]["1024x1024"][0] == pytest.approx(1.08 * TIMES[(1024, 1024)][0])
    for k, own_k in enumerate(seen):  # sizes the run never formed keep the fitted time
        if not own_k:
            assert own_service.times_s[0][k] == SERVICE.times_s[0][k]


def test_live_loop_in_real_time_stays_close():
    times = {k: [t / 20 for t in v] for k, v in TIMES.items()}  # 10-70 ms batches
    cfg = config(rate_per_s=40.0, duration_s=1.5, warmup_s=0.2, window_s=0.01)
    schedule = arrivals.poisson(cfg)
    trace = run.run_batches(schedule, cfg, run.FakeService(times, run.RealClock()))
    service = queueing.Service(tuple(tuple(times[(r.height, r.width)]) for r in MIX), (0.7, 0.3))
    predicted, _ = report.same_arrivals(trace, cfg, service)
    m = report.measured(trace, cfg)
    assert predicted["p50_s"] == pytest.approx(m["p50_s"], rel=0.25, abs=0.01)


def test_ctrl_c_keeps_what_was_measured():
    cfg = config()
    clock = run.VirtualClock()
    trace = run.run_batches(arrivals.poisson(cfg), cfg,
                            run.FakeService(TIMES, clock, interrupt_on=200), clock)
    assert trace.stopped.startswith("interrupted")
    served = ~np.isnan(trace.finish_s)
    assert 200 <= served.sum() < len(served)
    assert report.measured(trace, cfg)["p95_s"] is not None


def test_time_limit_and_request_bound():
    cfg = config(rate_per_s=20.0, limit_s=30.0)  # overloaded: the queue grows without end
    clock = run.VirtualClock()
    trace = run.run_batches(arrivals.poisson(cfg), cfg, run.FakeService(TIMES, clock), clock)
    assert trace.stopped == "time limit 30 s"
    assert np.nanmax(trace.start_s) <= 30.0
    assert len(arrivals.poisson(config(max_requests=50))) == 50


def test_failed_batches_are_errors_not_crashes():
    cfg = config(duration_s=60.0)
    clock = run.VirtualClock()
    trace = run.run_batches(arrivals.poisson(cfg), cfg,
                            run.FakeService(TIMES, clock, fail_on={3, 5}), clock)
    m = report.measured(trace, cfg)
    assert m["error_requests"] >= 2 and [e["count"] for e in trace.errors] == [1, 1]


@pytest.mark.parametrize("target", [0.4, 0.85])
def test_utilization_flag_finds_the_rate_the_simulation_puts_there(target):
    from advisor.commands.loadtest import rate_for_utilization

    cfg = rate_for_utilization(config(), FakeModels(), target)
    service, _ = report.service_table(FakeModels(), cfg.gpu, cfg)
    busy = queueing.simulate(service, cfg.rate_per_s, 1, cfg.window_s).utilization
    assert busy == pytest.approx(target, abs=0.02)


def test_steady_state_says_when_a_run_is_too_short():
    cfg = config(rate_per_s=3.5, duration_s=60.0)
    out = report.steady_state(cfg, SERVICE, 3.5, 200, [1.0, 2.0])
    assert out["utilization"] > 0.5 and out["p95_s"] > 0
    assert out["long_enough"] is False and "too short" in out["run_length_note"]
    light = queueing.Service(((0.1,) * 4, (0.05,) * 4), (0.7, 0.3))
    p95 = queueing.simulate(light, 1.0, 1, cfg.window_s).p95_s
    long_run = report.run_length(cfg, light, 1.0, 2000, p95)
    assert long_run["long_enough"] is True


def test_soak_slopes_find_a_leak_and_bound_no_leak():
    t = np.arange(0, 600, 1.0)
    rng = np.random.default_rng(1)
    flat = report.slope_per_h(t, 1000 + rng.normal(0, 2, len(t)))
    assert flat["ci"][0] < 0 < flat["ci"][1]
    leak = report.slope_per_h(t, 1000 + t / 3600 * 50 + rng.normal(0, 2, len(t)))
    assert leak["ci"][0] > 20
    cfg = config(duration_s=500.0, warmup_s=0.0, soak=True)
    trace = run.Trace(np.array([1.0]), np.array([0]))
    trace.samples = [{"t_s": float(x), "allocated_mb": 1000 + x / 3600 * 50} for x in t]
    out = report.soak(trace, cfg)
    assert out["memory_slope_mb_per_h"] == pytest.approx(50, rel=0.01)
    assert "grows" in out["verdict"][0]


def test_soak_reads_a_pool_that_steps_up_then_settles_as_no_leak():
    # The caching allocator's pool: two steps up in the first half, flat after (as on the H200).
    t = np.arange(0, 480, 2.0)
    reserved = np.where(t < 50, 25_000.0, np.where(t < 150, 34_000.0, 41_000.0))
    trace = run.Trace(np.array([1.0]), np.array([0]))
    trace.samples = [{"t_s": float(x), "reserved_mb": float(y), "allocated_mb": 19_768.6}
                     for x, y in zip(t, reserved)]
    out = report.soak(trace, config(duration_s=470.0, warmup_s=10.0, soak=True))
    reserved_fit, flat = out["memory_slopes"]["reserved_mb"], out["memory_slopes"]["allocated_mb"]
    assert reserved_fit["first_half_mb"] == [25_000.0, 41_000.0]
    # Flat for 234 s: bounded by one 2 MB step over that span, not by zero or NaN.
    span_h = (reserved_fit["window_s"][1] - reserved_fit["window_s"][0]) / 3600
    assert flat["ci"] == pytest.approx([-2 / span_h, 2 / span_h])
    reserved_verdict = next(v for v in out["verdict"] if v.startswith("reserved_mb"))
    assert "rose 25,000 -> 41,000 MB" in reserved_verdict and "no leak detected" in reserved_verdict


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    bodies: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.bodies.append(body)
        time.sleep(0.01 if body.get("h", body.get("height")) == 512 else 0.02)
        status = 500 if body.get("height") == 999 else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.bodies = []
    with serving(_Handler) as url:
        yield f"{url}/generate"


def test_url_mode_against_a_local_server(server, tmp_path, capsys):
    out = tmp_path / "endpoint.json"
    code = main(["loadtest", "--url", server, "--rate", "30", "--duration-s", "1",
                 "--warmup-s", "0.2", "--resolution", "512x512:0.5", "--resolution",
                 "1024x1024:0.5", "--no-predict", "--no-progress", "--out", str(out),
                 "--body", '{"input": {"text": "$prompt", "h": "$height", "w": "$width"}}'])
    assert code == 0
    doc = results.load(out)
    assert doc["mode"] == "http" and doc["measured"]["error_requests"] == 0
    assert 0.005 < doc["measured"]["p50_s"] < 0.5
    assert _Handler.bodies and set(_Handler.bodies[0]["input"]) == {"text", "h", "w"}
    assert isinstance(_Handler.bodies[0]["input"]["h"], int)
    assert "measured" in capsys.readouterr().out


def test_url_mode_counts_server_errors(server):
    cfg = config(resolutions=(Resolution(999 // 16 * 16, 64, 1.0),), rate_per_s=20.0,
                 duration_s=0.3, warmup_s=0.0)
    service = run.HttpService(server, {"height": 999}, timeout_s=5)
    trace = run.run_requests(arrivals.poisson(cfg), cfg, service, max_inflight=4)
    assert trace.error.all() and "HTTPError" in trace.errors[0]["message"]


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv,expected", [
    (["--rate", "0"], "--rate: expected a rate > 0"),
    (["--rate", "-1"], "--rate: expected a rate > 0"),
    (["--rate", "1", "--duration-s", "0"], "--duration-s: expected a duration > 0"),
    (["--plan", "nope.yaml"], "--plan nope.yaml: no such file"),
    (["--rate", "1", "--url", "ftp://127.0.0.1/x"], "expected an http:// or https://"),
    (["--rate", "1", "--url", "127.0.0.1:8000"], "expected an http:// or https://"),
    (["--rate", "1", "--resolution", "1000x1024"], "positive multiple of 16"),
    (["--rate", "1", "--resolution", "big"], "WIDTHxHEIGHT"),
    (["--rate", "1", "--max-batch", "0"], "--max-batch"),
    (["--rate", "1", "--body", "{nope"], "--body: not JSON"),
    ([], "give the arrivals"),
])
def test_bad_arguments_give_messages(argv, expected, capsys):
    assert main(["loadtest", "--no-predict", *argv]) == 2
    assert expected in capsys.readouterr().err


def test_trace_file_errors_name_the_line(tmp_path, capsys):
    trace = tmp_path / "trace.txt"
    trace.write_text("0.0 1024x1024\n0.5 512x512\n0.2 512x512\n")
    assert main(["loadtest", "--trace", str(trace), "--no-predict"]) == 2
    assert f"{trace}:3: times must be finite and ascending" in capsys.readouterr().err


def test_fake_predicted_run_writes_a_valid_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("advisor.commands.loadtest.models_from_args", lambda args: FakeModels())
    out = tmp_path / "fake.json"
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,resolution\n" + "".join(
        f"{i * 0.05:.3f},{'512x512' if i % 3 else '256x256'}\n" for i in range(30)))
    code = main(["loadtest", "--trace", str(trace), "--fake", "predicted", "--gpu", "h200-sxm-141gb",
                 "--max-batch", "2", "--window-s", "0.01", "--duration-s", "1.5",
                 "--warmup-s", "0.1", "--limit-s", "2", "--no-progress", "--out", str(out), "--soak"])
    assert code == 0, capsys.readouterr().err
    doc = results.load(out)
    assert doc["predicted"]["p95_s"] > 0 and doc["predicted_steady"]["utilization"] > 0
    assert doc["config"]["max_batch"] == 2 and len(doc["config"]["resolutions"]) == 2
    assert "memory_slope_mb_per_h" in doc["measured"]
    assert len(doc["trace"]["arrival_s"]) == doc["requests"] == 30


def test_plan_option_sets_the_run_and_says_one_gpu_is_not_the_fleet(tmp_path, monkeypatch,
                                                                      capsys):
    import advisor.cache
    from advisor.catalog import load_catalog

    catalog = load_catalog()
    monkeypatch.setattr(advisor.cache, "load_models", lambda *a, **k: FakeModels(catalog))
    monkeypatch.setattr("advisor.commands.loadtest.models_from_args", lambda args: FakeModels(catalog))
    plan = tmp_path / "plan.yaml"
    assert main(["recommend", "--request", "examples/request.yaml", "--data", str(tmp_path),
                 "--gpus", "h100-sxm-80gb", "--out", str(plan)]) == 0
    capsys.readouterr()
    out = tmp_path / "run.json"
    assert main(["loadtest", "--plan", str(plan), "--fake", "predicted", "--duration-s", "6",
                 "--warmup-s", "0", "--limit-s", "2", "--no-progress", "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    from advisor.export import load_plan

    saved = load_plan(plan)
    option = saved["results"]["options"][0]
    doc = results.load(out)
    serving = option["fleet"]["serving_gpus"]
    assert doc["gpu"] == option["gpu"] and doc["config"]["max_batch"] == option["max_batch"]
    assert doc["rate_per_s"] == pytest.approx(saved["request"].peak_images_per_s / serving)
    assert serving > 1 and f"is for {serving} GPUs behind one dispatcher" in printed


# --------------------------------------------------------------------------- results files


def _doc(tmp_path):
    cfg = config(duration_s=60.0)
    clock = run.VirtualClock()
    trace = run.run_batches(arrivals.poisson(cfg), cfg, run.FakeService(TIMES, clock), clock)
    from advisor.commands.loadtest import summarize

    doc = summarize(trace, cfg, len(arrivals.poisson(cfg)), FakeModels(), "h200-sxm-141gb",
                    "in-process", {})
    doc["name"] = "t"
    return results.save(doc, tmp_path / "t.json")


def test_reanalyze_recomputes_a_saved_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("advisor.commands.loadtest.models_from_args", lambda args: FakeModels())
    path = _doc(tmp_path)
    old = results.load(path)
    out = tmp_path / "again.json"
    assert main(["loadtest", "--reanalyze", str(path), "--out", str(out)]) == 0
    new = results.load(out)
    assert new["created"] == old["created"] and new["reanalyzed"]
    for key in ("p50_s", "p95_s", "p99_s", "p95_ci_s", "utilization"):
        assert new["measured"][key] == pytest.approx(old["measured"][key], abs=1e-5), key
    assert new["predicted"]["p95_s"] == pytest.approx(old["predicted"]["p95_s"], abs=1e-5)
    assert new["trace"]["finish_s"] == old["trace"]["finish_s"]
    assert main(["loadtest", "--reanalyze", str(path), "--rate", "2"]) == 2
    assert "leave out --rate" in capsys.readouterr().err


def test_results_round_trip(tmp_path):
    path = _doc(tmp_path)
    doc = results.load(path)
    for block, keys in (("measured", ("p50_s", "p95_s", "p99_s", "p95_ci_s",
                                      "throughput_img_per_s", "utilization")),
                        ("predicted", ("p50_s", "p95_s", "p99_s")),
                        ("predicted_steady", ("p50_s", "p95_s", "p99_s", "utilization"))):
        assert all(doc[block][k] is not None for k in keys), block
    assert {"setting", "max_batch", "window_s", "resolutions"} <= set(doc["config"])
    docs, problems = results.load_dir(tmp_path)
    assert len(docs) == 1 and not problems


@pytest.mark.parametrize("edit,field", [
    (lambda d: d["measured"].update(p95_s="fast"), "measured.p95_s"),
    (lambda d: d["config"].update(max_batch=0), "config.max_batch"),
    (lambda d: d.pop("gpu"), "field 'gpu'"),
    (lambda d: d["measured"].update(p95_ci_s=[3, 1]), "measured.p95_ci_s"),
    (lambda d: d["trace"]["finish_s"].pop(), "field 'trace'"),
    (lambda d: d.update(kind="plan"), "field 'kind'"),
])
def test_bad_results_files_name_file_and_field(tmp_path, edit, field):
    path = _doc(tmp_path)
    doc = json.loads(path.read_text())
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(AdvisorError, match=str(bad)) as err:
        results.load(bad)
    assert field in str(err.value)
    _, problems = results.load_dir(tmp_path)
    assert len(problems) == 1


def test_dashboard_page_shows_a_load_test(tmp_path, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    import streamlit as st

    from advisor import REPO_ROOT

    _doc(tmp_path)
    monkeypatch.setattr(results, "LOADTESTS_DIR", tmp_path)
    st.cache_data.clear()
    at = AppTest.from_file(str(REPO_ROOT / "app_streamlit.py"), default_timeout=60).run()
    at.switch_page("app_pages/loadtests.py").run()
    assert not at.exception, at.exception
    frame = at.container("loadtests_table").dataframe[0].value
    assert list(frame.name) == ["t"] and frame.p95_s.iat[0] > 0
    st.cache_data.clear()


def test_recommend_and_loadtest_read_a_resolution_in_one_order_width_x_height():
    from advisor.commands.recommend import _resolution
    from advisor.contract import shape_label
    from advisor.loadtest.arrivals import trace_resolutions
    from advisor.loadtest.config import parse_resolution

    portrait = parse_resolution("768x1344:0.3")
    assert (portrait.width, portrait.height, portrait.share) == (768, 1344, 0.3)
    assert _resolution("768x1344:0.3") == {"width": 768, "height": 1344, "share": 0.3}
    assert portrait.label == shape_label(1344, 768) == "768x1344"  # as the dashboard labels it
    [traced] = trace_resolutions(["768x1344"])
    assert (traced.width, traced.height) == (768, 1344)
