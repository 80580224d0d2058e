"""SLO-aware fleet sizing: Poisson arrivals, dynamic batching, mixed resolutions, N GPUs.

A discrete-event simulation, one loop iteration per batch, with the end-to-end latency of every
request (queueing + batching window + batch service). The policy it models:

- Requests arrive as one Poisson stream; each has a resolution class drawn from the mix shares.
- One dispatcher forms batches of a single resolution (a batch runs one shape), oldest request
  first: the batch for the oldest waiting request is ready when `max_batch` requests of its class
  are waiting, or `window_s` after that oldest request arrived, whichever is first (Triton-style
  dynamic batching with a max queue delay).
- The batch starts on the GPU that frees first, at max(ready, GPU free, start of the previous
  batch: the one dispatcher sends batches out in turn); it takes every request of its class that
  has arrived by then, up to `max_batch`, and runs for the service time of a batch of that size
  and resolution.

Common random numbers: every simulation with the same seed replays the same unit-rate arrival
stream scaled to the demand, so fleet sizes compare cleanly across N, candidates and demand.

The loop is a specialised event simulation (one iteration per batch, no event objects),
compiled with Cython at install (advisor/_eventloop.pyx; `_loop` is the same loop in Python, run
where no C compiler was found): about 0.7 ms for the default 11,000 requests, 4.7 ms in Python.
tests/test_queueing.py holds the two to identical figures, and checks them against a SimPy model
of the same policy (identical latency percentiles on the same arrivals) and against the exact
M/M/c (Erlang C) and M/D/1 (Pollaczek-Khinchine) results.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from advisor.errors import AdvisorError

try:  # the event loop compiled at install (advisor/_eventloop.pyx); `_loop` where it is not
    from advisor import _eventloop
except ImportError:
    _eventloop = None

DEFAULT_REQUESTS = 10_000  # measured requests per simulation
DEFAULT_WARMUP = 1_000  # requests simulated first and discarded (the fleet starts idle)
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Service:
    """Service times of one GPU configuration: `times_s[c][k - 1]` is the time of a batch of k
    requests of resolution class c (k = 1..max_batch), and `shares[c]` that class's demand share.
    `overhead_s[c]` (none: 0) is what the serving endpoint adds to each request of class c after
    its batch, off the GPU (advisor.overhead): in every latency, never in the GPU's busy time."""

    times_s: tuple[tuple[float, ...], ...]
    shares: tuple[float, ...]
    overhead_s: tuple[float, ...] = ()

    def overhead(self, c: int) -> float:
        return self.overhead_s[c] if self.overhead_s else 0.0

    @property
    def max_batch(self) -> int:
        return len(self.times_s[0])

    def image_s_at_full_batch(self) -> float:
        """Mean GPU-seconds per image when every batch is full: the best a GPU can do."""
        return sum(share * t[-1] / self.max_batch for share, t in zip(self.shares, self.times_s))


@dataclass(frozen=True)
class Simulation:
    """Sample size and seed; `requests` are measured after `warmup` discarded ones."""

    requests: int = DEFAULT_REQUESTS
    warmup: int = DEFAULT_WARMUP
    seed: int = DEFAULT_SEED

    def describe(self) -> str:
        return (f"discrete-event simulation, {self.requests:,} measured requests after "
                f"{self.warmup:,} warm-up, seed {self.seed}")


@dataclass(frozen=True)
class Result:
    n_gpus: int
    p50_s: float
    p95_s: float
    p99_s: float
    mean_s: float
    mean_wait_s: float  # arrival to batch start (window and queueing)
    mean_batch: float
    utilization: float  # busy GPU-seconds / (n_gpus x simulated time)
    gpu_bound: bool  # some batch waited for a free GPU; if not, more GPUs change nothing

    def quantile_s(self, q: float) -> float:
        return {0.5: self.p50_s, 0.95: self.p95_s, 0.99: self.p99_s}[q]


@lru_cache(maxsize=16)
def _arrivals(n: int, shares: tuple[float, ...], seed: int, rate: float):
    """Poisson arrivals: all times, and per class the positions in them. The same seed gives
    the same unit-rate stream at every rate."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0, n)) / rate
    classes = rng.choice(len(shares), size=n, p=np.asarray(shares) / sum(shares))
    positions = [np.flatnonzero(classes == c) for c in range(len(shares))]
    return times, positions


def simulate(
    service: Service,
    rate: float,
    n_gpus: int,
    window_s: float,
    sim: Simulation = Simulation(),
    service_scale: np.ndarray | None = None,
) -> Result:
    """Latency percentiles of `n_gpus` GPUs serving Poisson arrivals at `rate` requests/s.

    `service_scale`, if given (one value per request, in arrival order), multiplies the service
    time of each batch by the value of its oldest request (random service times, e.g.
    exponential for M/M/c checks).
    """
    if service_scale is None:
        latency, mean_wait, busy_s, n_batches, span, gpu_waits = _served_cached(
            service, rate, n_gpus, window_s, sim)
    else:
        latency, wait, busy_s, n_batches, span, gpu_waits = _served(
            service, rate, n_gpus, window_s, sim, service_scale)
        mean_wait = float(wait[sim.warmup:].mean())
    measured = latency[sim.warmup:]
    p50, p95, p99 = np.percentile(measured, [50, 95, 99])
    return Result(
        n_gpus=n_gpus, p50_s=float(p50), p95_s=float(p95), p99_s=float(p99),
        mean_s=float(measured.mean()), mean_wait_s=mean_wait,
        mean_batch=len(latency) / n_batches, utilization=float(busy_s / (n_gpus * span)),
        gpu_bound=gpu_waits > 0,
    )


def run_quantile_range(service: Service, rate: float, n_gpus: int, window_s: float, n: int,
                       q: float, sim: Simulation = Simulation(), level: float = 0.90):
    """The `level` range of the q-quantile latency that a run of `n` consecutive requests
    measures: the simulation's long run cut into runs of `n`. A short load test sees less of
    the long-run tail than the planner's figure holds. None when fewer than 10 runs fit."""
    return quantile_range(latencies(service, rate, n_gpus, window_s, sim), n, q, level)


def latencies(service: Service, rate: float, n_gpus: int, window_s: float,
              sim: Simulation = Simulation()) -> np.ndarray:
    """The simulated latency of each measured request, in arrival order (read-only)."""
    return _served_cached(service, rate, n_gpus, window_s, sim)[0][sim.warmup:]


def quantile_range(latency: np.ndarray, n: int, q: float, level: float = 0.90):
    """`run_quantile_range` on latencies already simulated."""
    runs = len(latency) // n if n >= 1 else 0
    if runs < 10:
        return None
    quantiles = np.percentile(latency[:runs * n].reshape(runs, n), 100 * q, axis=1)
    lo, hi = np.percentile(quantiles, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


@lru_cache(maxsize=256)
def _served_cached(service, rate, n_gpus, window_s, sim):
    """`_served` without service scaling, with the mean measured wait for the waits and the
    latencies read-only: a plan's short-test range cuts the very run its fleet sizing
    simulated (the last 256 runs are held, 88 KB each at the default sample)."""
    latency, wait, *rest = _served(service, rate, n_gpus, window_s, sim)
    latency.flags.writeable = False
    return (latency, float(wait[sim.warmup:].mean()), *rest)


def _served(service, rate, n_gpus, window_s, sim, service_scale=None):
    """Per request (arrival order) latency and wait; busy GPU-seconds, batches, the time span,
    and how many batches waited for a free GPU."""
    if rate <= 0 or n_gpus < 1:
        raise AdvisorError(f"simulation needs rate > 0 and n_gpus >= 1, got {rate}, {n_gpus}")
    n = sim.warmup + sim.requests
    times, positions = _arrivals(n, service.shares, sim.seed, rate)
    starts, ends, gpu_waits = _run(times, positions, service_scale, service, n_gpus, window_s)
    start, done = np.empty(n), np.empty(n)  # per request, in arrival order
    busy_s, n_batches, last_end = 0.0, 0, times[0]
    for c, pos in enumerate(positions):
        end = np.asarray(ends[c], dtype=int)
        head = np.concatenate(([0], end[:-1]))
        size = end - head
        batch_start = np.asarray(starts[c])
        t = np.asarray(service.times_s[c])[size - 1]
        if service_scale is not None:
            t = t * service_scale[pos][head]
        start[pos] = np.repeat(batch_start, size)
        done[pos] = np.repeat(batch_start + t, size) + service.overhead(c)
        busy_s += float(t.sum())
        n_batches += len(size)
        if len(t):
            last_end = max(last_end, float((batch_start + t).max()))
    return done - times, start - times, busy_s, n_batches, last_end - times[0], gpu_waits


def _run(times, positions, service_scale, service: Service, n_gpus: int, window_s: float):
    """Per class, the start of each batch and the arrival index one past its last request, in
    formation order; and how many batches waited for a GPU: the compiled event loop where it
    was built, else `_loop`."""
    if _eventloop is None:  # lists: what the Python loop indexes fastest
        scales = [[1.0] * len(p) if service_scale is None else service_scale[p].tolist()
                  for p in positions]
        return _loop([times[p].tolist() for p in positions], scales, service, n_gpus, window_s)
    counts = np.array([len(p) for p in positions], dtype=np.intp)
    width = max(counts, default=0) + service.max_batch
    arrivals = np.full((len(positions), width), math.inf)
    scales = np.ones((len(positions), width) if service_scale is not None else (1, 1))
    for c, p in enumerate(positions):
        arrivals[c, :len(p)] = times[p]
        if service_scale is not None:
            scales[c, :len(p)] = service_scale[p]
    starts, ends, batches, gpu_waits = _eventloop.run(
        arrivals, counts, np.array(service.times_s, dtype=float), scales,
        service_scale is not None, n_gpus, window_s)
    return ([starts[c, :k] for c, k in enumerate(batches)],
            [ends[c, :k] for c, k in enumerate(batches)], gpu_waits)


def _loop(by_class, scales, service: Service, n_gpus: int, window_s: float):
    """The event loop in Python: `_run`'s answer, with lists.

    Each class's arrivals are followed by `max_batch` infinite sentinels, so the loop needs no
    bounds checks: a class is exhausted when its next arrival is infinite."""
    inf = math.inf
    table = service.times_s
    max_batch = service.max_batch
    last = max_batch - 1
    padded = [a + [inf] * max_batch for a in by_class]
    heads = [0] * len(by_class)
    oldest = [a[0] for a in padded]  # each class's oldest waiting request
    free = [0.0] * n_gpus  # a heap of the times each GPU frees
    starts = [[] for _ in by_class]
    ends = [[] for _ in by_class]
    heapreplace = heapq.heapreplace
    gpu_waits, dispatched = 0, 0.0
    while True:
        first = min(oldest)
        if first == inf:
            return starts, ends, gpu_waits
        c = oldest.index(first)
        arrivals, head = padded[c], heads[c]
        fill = arrivals[head + last]  # when max_batch requests of the class have arrived
        ready = first + window_s
        if fill < ready:  # the batch fills before the window ends
            ready = fill
        if ready < dispatched:  # one dispatcher: the previous batch went out first
            ready = dispatched
        start = free[0]
        if start > ready:
            gpu_waits += 1
        else:
            start = ready
        dispatched = start
        if fill <= start:  # full: no search for the last request that has arrived
            end = head + max_batch
        else:
            end = bisect_right(arrivals, start, head, head + last)
        heapreplace(free, start + table[c][end - head - 1] * scales[c][head])
        starts[c].append(start)
        ends[c].append(end)
        heads[c] = end
        oldest[c] = arrivals[end]


# --------------------------------------------------------------------------- fleet sizing


@dataclass(frozen=True)
class Sizing:
    """The smallest fleet meeting the SLO, or `n_gpus` None and the reason none does."""

    n_gpus: int | None
    result: Result | None  # the simulation at n_gpus (at the last size tried when infeasible)
    lower_bound: int  # from throughput at full batches, before any simulation
    trials: tuple[tuple[int, float], ...]  # (N, latency at the SLO quantile) of each size tried
    reason: str = ""
    unbounded: Result | None = None  # with a GPU always free, when the search needed it
    gave_up_above: int | None = None  # the caller's `give_up_above`, when none up to it met


def gpus_lower_bound(service: Service, rate: float, quantile: float = 1.0,
                     slo_s: float = math.inf) -> int | float:
    """Fewest GPUs that could keep up (utilization < 1) at `rate`, whatever the queueing;
    math.inf when more requests than the quantile allows would miss the SLO on service alone.

    Work per request is at least its batch's GPU-seconds per image. With an SLO on a latency
    quantile, at most a (1 - quantile) fraction of requests may sit in batches whose service
    time alone exceeds the SLO; every other request pays the per-image time of a batch size that
    meets it. The violation budget goes where it saves the most work.
    """
    per_image = [[t / k for k, t in enumerate(times, 1)] for times in service.times_s]
    best_any = [min(p) for p in per_image]
    best_ok = [min((p[k] for k, t in enumerate(times) if t + service.overhead(c) <= slo_s),
                   default=math.inf)
               for c, (p, times) in enumerate(zip(per_image, service.times_s))]
    total = sum(service.shares)
    budget = 1.0 - quantile
    work = 0.0
    for c in sorted(range(len(per_image)), key=lambda c: best_any[c] - best_ok[c]):
        share = service.shares[c] / total
        slack = min(share, budget)
        budget -= slack
        if share > slack and best_ok[c] == math.inf:
            return math.inf  # more requests than the quantile allows can only miss the SLO
        work += slack * best_any[c] + (share - slack) * best_ok[c]
    return math.floor(rate * work) + 1


def gpus_estimate(service: Service, rate: float, window_s: float) -> float:
    """A rough fleet size, to order the search (not a bound): each batch holds its oldest
    request and those of its class arriving within the window, up to the max batch."""
    total, work = sum(service.shares), 0.0
    for share, times in zip(service.shares, service.times_s):
        k = min(service.max_batch, max(1, round(1 + rate * share / total * window_s)))
        work += share / total * times[k - 1] / k
    return rate * work


def latency_floor_s(service: Service, quantile: float) -> float:
    """A lower bound on the latency quantile for any fleet: the quantile of batch-of-one service
    times (and the endpoint's overhead) over the mix (no request finishes before its own
    resolution's batch of one would)."""
    floor = [t[0] + service.overhead(c) for c, t in enumerate(service.times_s)]
    order = sorted(range(len(service.shares)), key=lambda c: floor[c])
    total, cumulative = sum(service.shares), 0.0
    for c in order:
        cumulative += service.shares[c] / total
        if cumulative >= quantile - 1e-12:
            return floor[c]
    return floor[order[-1]]


@lru_cache(maxsize=4096)
def simulate_cached(
    service: Service, rate: float, n_gpus: int, window_s: float, sim: Simulation
) -> Result:
    return simulate(service, rate, n_gpus, window_s, sim)


def size_fleet(
    service: Service,
    rate: float,
    quantile: float,
    slo_s: float,
    window_s: float,
    max_gpus: int,
    sim: Simulation = Simulation(),
    give_up_above: int | None = None,
    probe_cap: bool = False,
) -> Sizing:
    """Smallest N whose simulated latency quantile meets `slo_s` at `rate` requests/s.

    Exponential search up from `gpus_lower_bound` (N, N+1, N+3, N+7, ...), then binary search
    between the last size that failed and the first that met the SLO, every size on the full
    sample (a shorter one understates the queue that builds up near saturation). It stops when
    a failing simulation had no batch waiting for a GPU (more GPUs cannot help) and, after
    UNBOUNDED_AFTER failures, asks once whether a fleet with a GPU always free meets the SLO.
    A caller with no use for a fleet larger than `give_up_above` (e.g. one that would cost more
    than the options it has) gets `gave_up_above` set instead of a larger answer; with
    `probe_cap` it first simulates that largest fleet and gives up at once where it misses the
    SLO (a smaller fleet waits longer), for a caller to whom only a fleet that meets matters
    (a GPU that already has an option). Where it meets, the search and its trials are as
    without the probe.
    """
    label = f"p{round(quantile * 100)}"
    floor = latency_floor_s(service, quantile)
    if floor > slo_s:
        return Sizing(None, None, 0, (), (
            f"{label} >= {floor:.2f} s with no queueing at all (batch-of-one service time), "
            f"above the {slo_s:g} s SLO"))
    lower = gpus_lower_bound(service, rate, quantile, slo_s)
    if lower > max_gpus:
        return Sizing(None, None, lower, (), (
            f"needs at least {lower} GPUs for {rate:.2f} img/s even with full batches "
            f"(of sizes that meet the SLO); max_gpus is {max_gpus}"))
    cap = max_gpus if give_up_above is None else min(max_gpus, give_up_above)
    if lower > cap:
        return Sizing(None, None, lower, (), f"needs more than {cap} GPUs (at least {lower} "
                      "even with full batches)", gave_up_above=cap)
    trials = _Trials(service, rate, quantile, slo_s, window_s, sim)
    if probe_cap and give_up_above is not None and cap > lower and not trials.meets_probe(cap):
        return trials.sizing(cap, lower, f"needs more than {cap} GPUs", gave_up_above=cap)
    failed, met = trials.expand(lower - 1, lower, cap)
    if met is not None:
        return trials.sizing(trials.bisect(failed, met), lower)
    if failed < max_gpus and not trials.hopeless(failed) and not trials.unbounded_failed():
        return trials.sizing(failed, lower, f"needs more than {failed} GPUs", gave_up_above=cap)
    return trials.sizing(failed, lower, trials.why_not(failed, max_gpus, window_s))


# Failed sizes after which the search simulates a fleet with a GPU always free: most answers
# are the lower bound or within two of it, so only a longer search pays for the extra run.
UNBOUNDED_AFTER = 3


class _Trials:
    """Simulations of one configuration, by fleet size."""

    def __init__(self, service, rate, quantile, slo_s, window_s, sim):
        self.args = (service, rate, window_s, sim)
        self.quantile, self.slo_s = quantile, slo_s
        self.results: dict[int, Result] = {}
        self.searched: dict[int, None] = {}  # the sizes the search tried, in order (no probe)
        self.unbounded: Result | None = None

    def latency(self, n: int, probe: bool = False) -> float:
        if n not in self.results:
            service, rate, window_s, sim = self.args
            self.results[n] = simulate_cached(service, rate, n, window_s, sim)
        if not probe:
            self.searched.setdefault(n)
        return self.results[n].quantile_s(self.quantile)

    def meets_probe(self, n: int) -> bool:
        return self.latency(n, probe=True) <= self.slo_s

    def meets(self, n: int) -> bool:
        return self.latency(n) <= self.slo_s

    def hopeless(self, n: int) -> bool:
        """Failed with no batch waiting for a GPU: the same at any larger N."""
        return not self.meets(n) and not self.results[n].gpu_bound

    def check_unbounded(self) -> bool:
        """Simulate with a GPU always free (as many GPUs as requests); True when the SLO is missed
        even then. unbounded_failed() reads that result afterwards without simulating."""
        service, rate, window_s, sim = self.args
        self.unbounded = simulate_cached(service, rate, sim.warmup + sim.requests, window_s, sim)
        return self.unbounded_failed()

    def unbounded_failed(self) -> bool:
        return self.unbounded is not None \
            and self.unbounded.quantile_s(self.quantile) > self.slo_s

    def expand(self, failed: int, n: int, cap: int) -> tuple[int, int | None]:
        """(last failing N, first meeting N or None) going up from n in doubling steps."""
        step, failures = 1, 0
        while not self.meets(n):
            failures += 1
            if self.hopeless(n) or n >= cap or (
                    failures == UNBOUNDED_AFTER and self.check_unbounded()):
                return n, None
            failed, n, step = n, min(n + step, cap), step * 2
        return failed, n

    def bisect(self, failed: int, met: int) -> int:
        while met - failed > 1:
            mid = (met + failed) // 2
            if self.meets(mid):
                met = mid
            else:
                failed = mid
        return met

    def why_not(self, n: int, max_gpus: int, window_s: float) -> str:
        label, got = f"p{round(self.quantile * 100)}", self.latency(n)
        if self.unbounded_failed():
            got = self.unbounded.quantile_s(self.quantile)
        elif not self.hopeless(n):
            return f"{label} {got:.2f} s > {self.slo_s:g} s at max_gpus {max_gpus}"
        return (f"{label} {got:.2f} s > {self.slo_s:g} s even with a GPU always free "
                f"(batching window {window_s:g} s + batch service)")

    def sizing(self, n: int, lower: int, reason: str = "",
               gave_up_above: int | None = None) -> Sizing:
        tried = tuple((k, self.results[k].quantile_s(self.quantile))
                      for k in (self.searched or self.results))
        return Sizing(None if reason else n, self.results[n], lower, tried, reason,
                      self.unbounded, gave_up_above)
