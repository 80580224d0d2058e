"""Load tests that cannot lie, on inputs that try to make them: requests sent and not answered
are failed requests, counted; a run that mostly failed exits non-zero; a dead endpoint stops the
run; every hostile flag or file is a message naming it (exit 2), in bounded time."""
from __future__ import annotations

import _thread
import json
import signal
import socket
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest

from advisor.cli import main
from advisor.errors import AdvisorError
from advisor.loadtest import arrivals, results, run
from advisor.loadtest.config import LoadConfig, Resolution
from tests.local_http import serving
from tests.ports import free_port

FAST_S = 5.0  # every refusal below comes well within this


class _Endpoint(BaseHTTPRequestHandler):
    """`/ok` answers, `/fail` answers 500, `/hang` answers after 2 s, `/drop` closes the
    connection without an answer."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path == "/hang":
            time.sleep(2.0)
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def endpoint():
    with serving(_Endpoint) as url:
        yield url



def _cli(capsys, *argv):
    started = time.perf_counter()
    code = main(["loadtest", "--no-predict", "--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err, time.perf_counter() - started


def _config(**kw):
    base = dict(resolutions=(Resolution(512, 512, 1.0),), rate_per_s=20.0, duration_s=0.5,
                warmup_s=0.0)
    return LoadConfig(**{**base, **kw})


# --------------------------------------------------------------------------- failed requests


@pytest.mark.parametrize("path,kind", [("/fail", "HTTPError"), ("/drop", "RemoteDisconnected"),
                                       ("/hang", "timed out")])
def test_requests_sent_and_not_answered_are_counted_and_the_run_exits_1(
        endpoint, path, kind, tmp_path, capsys):
    out = tmp_path / "run.json"
    code, printed, err, _ = _cli(capsys, "--url", endpoint + path, "--rate", "8",
                                 "--duration-s", "0.5", "--warmup-s", "0",
                                 "--request-timeout-s", "0.3", "--out", str(out))
    doc = results.load(out)  # written, with the failures, before the exit status says so
    m = doc["measured"]
    assert m["error_requests"] == doc["requests"] > 0 and m["measured_requests"] == 0
    assert kind in m["errors"][0]["message"]
    assert code == 1
    assert f"{m['error_requests']} of {m['error_requests']} requests sent failed" in err
    assert f"errors {m['error_requests']}" in printed


def test_a_dead_endpoint_stops_the_run_early(endpoint, tmp_path, capsys):
    out = tmp_path / "run.json"
    code, _, err, took = _cli(capsys, "--url", endpoint + "/fail", "--rate", "40",
                              "--duration-s", "30", "--warmup-s", "0", "--out", str(out))
    m = results.load(out)["measured"]
    assert code == 1 and m["stopped"].startswith("endpoint failing")
    assert m["error_requests"] < 40 and took < 10
    assert "endpoint failing" in err


def test_a_run_with_few_failures_exits_0(endpoint):
    cfg = _config(rate_per_s=40.0, duration_s=0.5)
    trace = run.run_requests(arrivals.poisson(cfg), cfg,
                             run.HttpService(endpoint + "/ok", {}, timeout_s=5))
    assert not trace.error.any() and not np.isnan(trace.finish_s).any()


def test_a_bad_port_or_host_is_refused_before_the_run(capsys):
    for url in (f"http://127.0.0.1:{free_port()}/x", "http://no-such-host.invalid/x"):
        code, _, err, took = _cli(capsys, "--url", url, "--rate", "1")
        assert code == 2 and "cannot connect" in err and took < FAST_S + 10


def test_requests_still_open_when_a_run_is_interrupted_are_failures():
    class Stuck:
        def request(self, height, width):
            _thread.interrupt_main()  # Ctrl-C while this request waits for its answer
            time.sleep(1.0)

    cfg = _config(rate_per_s=50.0, duration_s=5.0)
    # interrupt_main does nothing where SIGINT is not Python's handler: make it so
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trace = run.run_requests(arrivals.poisson(cfg), cfg, Stuck())
    finally:
        signal.signal(signal.SIGINT, before)
    sent = ~np.isnan(trace.start_s)
    assert trace.stopped.startswith("interrupted") and sent.any()
    assert trace.error[sent].all() and not trace.error[~sent].any()
    assert "not answered" in trace.errors[0]["message"]
    assert trace.errors[0]["count"] == sent.sum()
    time.sleep(1.1)  # the stuck request returns: the trace it finds closed stays as it was
    assert np.isnan(trace.finish_s[sent]).all()


# --------------------------------------------------------------------------- hostile flags


@pytest.mark.parametrize("argv,named", [
    (["--rate", "inf"], "--rate"),
    (["--rate", "nan"], "--rate"),
    (["--rate", "1e308", "--duration-s", "1e308"], "--duration-s"),
    (["--rate", "1", "--duration-s", "inf"], "--duration-s"),
    (["--rate", "1", "--warmup-s", "nan"], "--warmup-s"),
    (["--rate", "1", "--limit-s", "1e300"], "--limit-s"),
    (["--rate", "1", "--window-s", "inf"], "--window-s"),
    (["--rate", "1", "--max-batch", str(10**12)], "--max-batch"),
    (["--rate", "1", "--max-requests", str(10**12)], "--max-requests"),
    (["--rate", "1", "--seed", "-1"], "--seed"),
    (["--rate", "1", "--steps", "1000000"], "--steps"),
    (["--rate", "1", "--replicas", str(10**9)], "--replicas"),
    (["--rate", "1", "--resolution", "1024x1024:nan"], "--resolution '1024x1024:nan'"),
    (["--rate", "1", "--resolution", "1024x1024:inf"], "--resolution"),
    (["--rate", "1", "--resolution", "9" * 5000 + "x16"], "--resolution"),
    (["--rate", "1", "--resolution", "16384x16384"], "--resolution '16384x16384'"),
    (["--rate", "1", "--url", "http://[::1"], "--url 'http://[::1'"),
    (["--rate", "1", "--url", "http://[::1]:99999/x"], "--url"),
    (["--rate", "1", "--url", "http://host:port/x"], "--url"),
    (["--rate", "1", "--url", "http://h/\x1b[31mred"], "--url 'http://h/\\x1b[31mred'"),
    (["--rate", "1", "--url", "http://" + "a" * 5000], "--url"),
    (["--rate", "1", "--request-timeout-s", "inf"], "--request-timeout-s"),
    (["--rate", "1", "--request-timeout-s", "nan"], "--request-timeout-s"),
    (["--rate", "1", "--max-inflight", str(10**9)], "--max-inflight"),
    (["--rate", "1", "--body", "[" * 40_000 + "]" * 40_000], "--body: nested"),
    (["--rate", "1", "--body", '{"a": ' * 50 + "1" + "}" * 50], "--body: nested"),
    (["--rate", "1", "--body", "x" * 200_000], "--body"),
    (["--utilization", "nan"], "--utilization"),
    (["--rate", "1", "--name", "../../outside"], "--name '../../outside'"),
])
def test_hostile_flags_exit_2_naming_the_flag(argv, named, capsys):
    code, _, err, took = _cli(capsys, *argv)
    assert code == 2 and named in err, err
    assert err.isprintable() or "\x1b" not in err
    assert took < FAST_S


def test_out_that_is_a_folder_or_under_a_file_is_refused_before_the_run(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for out, why in ((tmp_path, "is a folder"), (tmp_path / "file" / "x.json", "not a folder")):
        code, _, err, _ = _cli(capsys, "--rate", "1", "--fake", "predicted", "--out", str(out))
        assert code == 2 and "--out" in err and why in err


def test_trace_files_with_huge_labels_name_the_line(tmp_path, capsys):
    trace = tmp_path / "trace.txt"
    trace.write_text("0 1024x1024\n1 " + "9" * 5000 + "x1024\n")
    code, _, err, took = _cli(capsys, "--trace", str(trace))
    assert code == 2 and f"{trace}:2" in err and len(err) < 400 and took < FAST_S


def test_poisson_schedules_stay_bounded_at_absurd_rates():
    for rate in (1e308, 1e-300):
        cfg = _config(rate_per_s=rate, max_requests=1000)
        assert len(arrivals.poisson(cfg)) <= 1000


# --------------------------------------------------------------------------- results files


def _saved(tmp_path):
    cfg = _config(duration_s=2.0)
    clock = run.VirtualClock()
    trace = run.run_batches(arrivals.poisson(cfg), cfg,
                            run.FakeService({(512, 512): [0.01]}, clock), clock)
    from advisor.commands.loadtest import summarize

    doc = summarize(trace, cfg, len(trace.arrival_s), None, "endpoint", "http", {})
    doc["name"] = "t"
    return results.save(doc, tmp_path / "t.json")


@pytest.mark.parametrize("edit,field", [
    (lambda d: d["trace"]["resolution"].__setitem__(3, 7), "trace.resolution[3]"),
    (lambda d: d["trace"]["arrival_s"].__setitem__(0, "soon"), "trace.arrival_s[0]"),
    (lambda d: d["trace"]["batch_size"].__setitem__(1, 1.5), "trace.batch_size[1]"),
    (lambda d: d["trace"]["error"].__setitem__(2, "no"), "trace.error[2]"),
    (lambda d: d["config"].update(seed="seven"), "--seed"),
    (lambda d: d["config"].update(duration_s=1e300), "--duration-s"),
    (lambda d: d["config"]["resolutions"][0].update(height="512"), "config.resolutions[0]"),
    (lambda d: d["config"].update(setting=[1]), "setting"),
    (lambda d: d["measured"].update(errors=[{"message": 1}]), "measured.errors"),
    (lambda d: d["measured"].update(stopped=[1]), "measured.stopped"),
    (lambda d: d["measured"].update(error_requests=-1), "measured.error_requests"),
    (lambda d: d.update(samples=[{"t_s": 1, "allocated_mb": "x"}]), "samples"),
])
def test_bad_results_files_are_refused_naming_file_and_field(tmp_path, edit, field, capsys):
    doc = json.loads(_saved(tmp_path).read_text())
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, _, err, took = _cli(capsys, "--reanalyze", str(bad))
    assert code == 2 and str(bad) in err and field in err, err
    assert took < FAST_S


def test_deeply_nested_results_files_are_refused(tmp_path, capsys):
    bad = tmp_path / "deep.json"
    bad.write_text('{"trace": ' + "[" * 200_000 + "]" * 200_000 + "}")
    code, _, err, _ = _cli(capsys, "--reanalyze", str(bad))
    assert code == 2 and str(bad) in err and "nested" in err


def test_an_unwritable_out_is_refused_before_the_run_and_a_failed_write_named(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("advisor.fileio.os.access", lambda path, mode: False)
    code, _, err, _ = _cli(capsys, "--rate", "1", "--fake", "predicted",
                           "--out", str(tmp_path / "x.json"))
    assert code == 2 and f"--out {tmp_path / 'x.json'}: the folder {tmp_path} " in err
    assert "is not writable" in err
    monkeypatch.undo()

    def denied(path, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("advisor.fileio.write_atomic", denied)
    with pytest.raises(AdvisorError, match="results file .*: not written \\(Permission denied"):
        _saved(tmp_path)
