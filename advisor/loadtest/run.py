"""The live loops of a load test: batches through a service in process, or single requests to an
HTTP endpoint. Both are bounded (the schedule's `max_requests`, the config's time limit) and stop
cleanly on Ctrl-C, keeping what they measured.

A service is anything with `run(height, width, batch)` (blocking until the batch is done) and
optionally `warm(height, width, max_batch)` and `sample() -> dict` (memory and power figures, MB / W / %).
"""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from advisor.dispatch import Dispatcher
from advisor.errors import AdvisorError, shown
from advisor.loadtest.arrivals import Schedule
from advisor.loadtest.config import LoadConfig

SAMPLE_EVERY_S = 1.0  # memory samples at most this often
PROGRESS_EVERY_S = 0.5
# Server-side timings an endpoint may report per request (`advisor serve` does, in its answer's
# "timings"): the wait for a batch, the batch's pipeline time, PNG encoding, receipt to answer.
SERVER_TIMINGS = ("queue_s", "service_s", "encode_s", "server_s")


class RealClock:
    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        while (left := t - time.perf_counter()) > 0:
            time.sleep(min(left, 0.5))  # short sleeps: Ctrl-C lands promptly


class VirtualClock:
    """Time that passes only when something sleeps: a fake service on it runs instantly."""

    def __init__(self):
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)


class FakeService:
    """A service with known timings: `times_s[(height, width)][k - 1]` for a batch of k, spent on
    `clock`. `fail_on` / `interrupt_on`: batch numbers (from 0) that raise, for tests."""

    def __init__(self, times_s: dict, clock, fail_on=(), interrupt_on=None):
        self.times_s, self.clock = times_s, clock
        self.fail_on, self.interrupt_on = set(fail_on), interrupt_on
        self.batches = 0

    def run(self, height: int, width: int, batch: int) -> None:
        n, self.batches = self.batches, self.batches + 1
        if n == self.interrupt_on:
            raise KeyboardInterrupt
        self.clock.sleep_until(self.clock.now() + self.times_s[(height, width)][batch - 1])
        if n in self.fail_on:
            raise RuntimeError(f"fake failure in batch {n}")


@dataclass
class Trace:
    """Per request (arrays in arrival order; NaN / -1 where a request was never served), the
    samples taken during the run, and why it stopped."""

    arrival_s: np.ndarray
    resolution: np.ndarray
    start_s: np.ndarray = None
    finish_s: np.ndarray = None
    batch: np.ndarray = None  # batch number, -1 unserved (HTTP: the request's own number)
    batch_size: np.ndarray = None
    error: np.ndarray = None  # bool
    samples: list = field(default_factory=list)  # {"t_s": ..., figures...}
    errors: list = field(default_factory=list)  # first messages, with counts
    server: dict = field(default_factory=dict)  # SERVER_TIMINGS name -> per request (NaN: none)
    stopped: str = "completed"
    wall_s: float = 0.0
    busy_s: float = 0.0  # service time summed over batches (GPU-busy, one replica)

    def __post_init__(self):
        n = len(self.arrival_s)
        self.start_s = np.full(n, np.nan) if self.start_s is None else self.start_s
        self.finish_s = np.full(n, np.nan) if self.finish_s is None else self.finish_s
        self.batch = np.full(n, -1, dtype=int) if self.batch is None else self.batch
        self.batch_size = np.zeros(n, dtype=int) if self.batch_size is None else self.batch_size
        self.error = np.zeros(n, dtype=bool) if self.error is None else self.error

    def batch_rows(self, mask: np.ndarray) -> np.ndarray:
        """One request index per batch among the requests in `mask` (a batch's requests share
        its start and finish), in order of first appearance."""
        first: dict = {}
        for i in np.flatnonzero(mask):
            first.setdefault(int(self.batch[i]), i)
        return np.asarray(list(first.values()), dtype=int)

    def note_server(self, i: int, timings: dict) -> None:
        """Request i's server-side timings (the SERVER_TIMINGS an answer reports)."""
        for name in SERVER_TIMINGS:
            value = timings.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if name not in self.server:
                    self.server[name] = np.full(len(self.arrival_s), np.nan)
                self.server[name][i] = value

    def note_error(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"[:300]
        for item in self.errors:
            if item["message"] == message:
                item["count"] += 1
                return
        if len(self.errors) < 20:
            self.errors.append({"message": message, "count": 1})


class Progress:
    """A tqdm bar over the requests with the live p95 of the measured ones."""

    def __init__(self, total: int, warmup_s: float, enabled: bool):
        self.bar = None
        self.warmup_s, self.latencies, self.shown = warmup_s, [], 0.0
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="req", dynamic_ncols=True, leave=True)

    def done(self, arrivals, finishes, now: float) -> None:
        self.latencies += [f - a for a, f in zip(arrivals, finishes) if a >= self.warmup_s]
        if self.bar is None:
            return
        self.bar.update(len(arrivals))
        if now - self.shown >= PROGRESS_EVERY_S and self.latencies:
            self.bar.set_postfix(p95_s=f"{np.percentile(self.latencies, 95):.2f}")
            self.shown = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batches(schedule: Schedule, config: LoadConfig, service, clock=None,
                progress: bool = False) -> Trace:
    """Serve the schedule through one dispatcher on `service` (one replica)."""
    clock = clock or RealClock()
    res = config.resolutions
    trace = Trace(schedule.times_s.copy(), schedule.classes.copy())
    if hasattr(service, "warm"):  # first-call effects (kernels, autotuning) before the clock
        for r in res:
            service.warm(r.height, r.width, config.max_batch)
    dispatcher = Dispatcher(schedule.times_s, schedule.classes, len(res), config.max_batch,
                            config.window_s)
    bar = Progress(len(schedule), config.warmup_s, progress)
    t0 = clock.now()
    free, number, next_sample = 0.0, 0, 0.0
    sample = getattr(service, "sample", None)
    try:
        while (batch := dispatcher.next(free)) is not None:
            if batch.start_s > config.time_limit_s:
                trace.stopped = f"time limit {config.time_limit_s:g} s"
                break
            clock.sleep_until(t0 + batch.start_s)
            rows = list(batch.requests)
            r = res[batch.resolution]
            start = clock.now() - t0
            try:
                service.run(r.height, r.width, len(rows))
            except Exception as exc:  # a failed batch: its requests count as errors
                trace.note_error(exc)
                trace.error[rows] = True
            free = clock.now() - t0
            trace.start_s[rows], trace.finish_s[rows] = start, free
            trace.batch[rows], trace.batch_size[rows] = number, len(rows)
            trace.busy_s += free - start
            number += 1
            if sample is not None and free >= next_sample:
                trace.samples.append({"t_s": free, **sample()})
                next_sample = free + SAMPLE_EVERY_S
            bar.done(trace.arrival_s[rows], [free] * len(rows), free)
    except KeyboardInterrupt:
        trace.stopped = "interrupted (Ctrl-C)"
    finally:
        bar.close()
    trace.wall_s = clock.now() - t0
    return trace


# --------------------------------------------------------------------------- HTTP endpoints

DEFAULT_BODY = {"prompt": "$prompt", "height": "$height", "width": "$width"}
DEFAULT_PROMPT = "a photo of a red fox in the snow, golden hour, 35mm"


MAX_URL_CHARS = 2000
MAX_BODY_CHARS = 100_000
MAX_BODY_DEPTH = 20
STOP_AFTER_FAILURES = 10  # this many requests failing in a row: the endpoint is down, stop
CONNECT_CHECK_S = 10.0  # the longest the address check before a run waits


def check_url(url: str) -> str:
    """An http(s) address with a host and a valid port; AdvisorError naming it otherwise."""
    if len(url) > MAX_URL_CHARS or any(c.isspace() or not c.isprintable() for c in url):
        raise AdvisorError(f"--url {shown(url)}: expected an http:// or https:// address of at "
                           f"most {MAX_URL_CHARS} characters, without spaces or control "
                           "characters")
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError as exc:
        raise AdvisorError(f"--url {shown(url)}: not a valid address ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise AdvisorError(f"--url {shown(url)}: expected an http:// or https:// address")
    return url


def check_reachable(url: str, timeout_s: float) -> None:
    """AdvisorError unless a TCP connection to the address's host and port opens within
    `timeout_s` (at most CONNECT_CHECK_S): a bad port or host fails here, before any run."""
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port),
                                      timeout=min(timeout_s, CONNECT_CHECK_S)):
            pass
    except (OSError, ValueError) as exc:  # refused, unreachable, no such host, timed out
        raise AdvisorError(f"--url {shown(url)}: cannot connect to {shown(parsed.hostname)} "
                           f"port {port} ({type(exc).__name__}: {exc})") from None


def parse_body(text: str | None) -> dict:
    """The request body template: JSON in which the strings "$prompt", "$height" and "$width"
    become the request's values (numbers stay numbers)."""
    if text is None:
        return dict(DEFAULT_BODY)
    if len(text) > MAX_BODY_CHARS:
        raise AdvisorError(f"--body: expected at most {MAX_BODY_CHARS:,} characters, got "
                           f"{len(text):,}")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdvisorError(f"--body: not JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:  # nested past the parser's own bound
        raise AdvisorError(f"--body: nested deeper than {MAX_BODY_DEPTH} levels") from None
    if _depth(body) > MAX_BODY_DEPTH:
        raise AdvisorError(f"--body: nested deeper than {MAX_BODY_DEPTH} levels")
    if not isinstance(body, dict):
        raise AdvisorError("--body: expected a JSON object, e.g. " + json.dumps(DEFAULT_BODY))
    return body


def _depth(value) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_BODY_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node \
            if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def fill_body(template, values: dict):
    if isinstance(template, str) and template.startswith("$") and template[1:] in values:
        return values[template[1:]]
    if isinstance(template, dict):
        return {k: fill_body(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_body(v, values) for v in template]
    return template


class HttpService:
    """POSTs one JSON request per image to `url`; a non-2xx answer or a timeout is an error. A
    JSON answer with "timings" (as `advisor serve` gives) is returned, else None."""

    def __init__(self, url: str, body: dict, timeout_s: float = 300.0,
                 prompt: str = DEFAULT_PROMPT, headers: dict | None = None):
        self.url, self.body, self.timeout_s = check_url(url), body, timeout_s
        self.prompt = prompt
        self.headers = {"Content-Type": "application/json", **(headers or {})}

    def request(self, height: int, width: int) -> dict | None:
        data = json.dumps(fill_body(self.body, {"prompt": self.prompt, "height": height,
                                                "width": width})).encode()
        req = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as answer:  # noqa: S310
            body = answer.read()
            if "json" not in (answer.headers.get("Content-Type") or ""):
                return None
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return parsed if isinstance(parsed, dict) and isinstance(parsed.get("timings"), dict) \
            else None


def run_requests(schedule: Schedule, config: LoadConfig, service: HttpService,
                 max_inflight: int = 64, progress: bool = False) -> Trace:
    """Send each request at its arrival time (open loop), at most `max_inflight` at once. Where
    the endpoint reports its batch (replica and batch number) and timings, the trace keeps them."""
    res = config.resolutions
    trace = Trace(schedule.times_s.copy(), schedule.classes.copy())
    bar = Progress(len(schedule), config.warmup_s, progress)
    lock = threading.Lock()
    batch_ids: dict = {}  # (replica, batch number) the endpoint reports -> the trace's number
    clock = RealClock()
    t0 = clock.now()
    deadline = config.time_limit_s
    # A request sent and not answered (an error, a timeout, still open when the run stops) is a
    # failed request; STOP_AFTER_FAILURES failures in a row stop the run (the endpoint is down).
    down = threading.Event()  # set by the request that makes the run of failures long enough
    state = {"failing": 0, "closed": False}
    sent_s = np.full(len(schedule), np.nan)  # when each request went out

    def send(i: int) -> None:
        sent_s[i] = clock.now() - t0  # from here on the request is answered, or it failed
        r = res[int(trace.resolution[i])]
        start = clock.now() - t0
        answer = None
        try:
            answer = service.request(r.height, r.width)
            failed = None
        except Exception as exc:  # any failure of this request is its own, counted below
            failed = exc
        finish = clock.now() - t0
        with lock:
            if state["closed"]:  # the run stopped without waiting: counted as unanswered
                return
            trace.start_s[i], trace.finish_s[i] = start, finish
            trace.batch[i], trace.batch_size[i] = i, 1  # its own batch unless told
            if answer is not None:
                trace.note_server(i, answer["timings"])
                if isinstance(answer.get("batch"), int) and isinstance(answer.get("batch_size"),
                                                                       int):
                    key = (str(answer.get("replica")), answer["batch"])
                    # numbered after the requests' own numbers, so the two never meet
                    trace.batch[i] = len(trace.arrival_s) + batch_ids.setdefault(key,
                                                                                 len(batch_ids))
                    trace.batch_size[i] = answer["batch_size"]
            if failed is not None:
                trace.error[i] = True
                trace.note_error(failed)
            state["failing"] = state["failing"] + 1 if failed is not None else 0
            if state["failing"] >= STOP_AFTER_FAILURES:
                down.set()
            bar.done([trace.arrival_s[i]], [finish], finish)

    pool = ThreadPoolExecutor(max_workers=max_inflight)
    try:
        for i, t in enumerate(schedule.times_s):
            if t > deadline:
                trace.stopped = f"time limit {deadline:g} s"
                break
            if down.wait(max(0.0, min(t0 + t - clock.now(), deadline))):
                trace.stopped = (f"endpoint failing: {STOP_AFTER_FAILURES} requests in a row "
                                 "failed")
                break
            pool.submit(send, i)
    except KeyboardInterrupt:
        trace.stopped = "interrupted (Ctrl-C)"
    finally:
        # In-flight requests finish (each bounded by the request timeout) unless interrupted;
        # requests queued behind --max-inflight are dropped when the run stops early.
        interrupted = trace.stopped.startswith("interrupted")
        pool.shutdown(wait=not interrupted,
                      cancel_futures=interrupted or trace.stopped.startswith("endpoint"))
        bar.close()
    with lock:
        state["closed"] = True
        unanswered = ~np.isnan(sent_s) & np.isnan(trace.finish_s)
        if unanswered.any():
            trace.start_s[unanswered], trace.error[unanswered] = sent_s[unanswered], True
            for _ in range(int(unanswered.sum())):
                trace.note_error(TimeoutError("sent and not answered before the run stopped"))
        trace.wall_s = clock.now() - t0
        trace.busy_s = None  # the endpoint's GPUs are not visible from here
        return trace
