"""SLO-aware fleet sizing: Poisson arrivals, dynamic batching, mixed resolutions, N GPUs.

A discrete-event simulation, one loop iteration per batch, with the end-to-end latency of every
request (queueing + batching window + batch service). The policy it models:

- Requests arrive as one Poisson stream; each has a resolution class drawn from the mix shares.
- One dispatcher forms batches of a single resolution (a batch runs one shape), oldest request
  first: the batch for the oldest waiting request is ready when `max_batch` requests of its class
  are waiting, or `window_s` after that oldest request arrived, whichever is first (Triton-style
  dynamic batching with a max queue delay).
- The batch starts on the GPU that frees first, at max(ready, GPU free); it takes every request of
  its class that has arrived by then, up to `max_batch`, and runs for the service time of a batch
  of that size and resolution.

Common random numbers: every simulation with the same seed replays the same unit-rate arrival
stream scaled to the demand, so fleet sizes compare cleanly across N, candidates and demand.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from advisor.errors import AdvisorError

DEFAULT_REQUESTS = 10_000  # measured requests per simulation
DEFAULT_WARMUP = 1_000  # requests simulated first and discarded (the fleet starts idle)
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Service:
    """Service times of one GPU configuration: `times_s[c][k - 1]` is the time of a batch of k
    requests of resolution class c (k = 1..max_batch), and `shares[c]` that class's demand share."""

    times_s: tuple[tuple[float, ...], ...]
    shares: tuple[float, ...]

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


@lru_cache(maxsize=8)
def _unit_stream(n: int, shares: tuple[float, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times of a rate-1 Poisson stream and each arrival's class."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1.0, n))
    classes = rng.choice(len(shares), size=n, p=np.asarray(shares) / sum(shares))
    return times, classes


def simulate(
    service: Service,
    rate: float,
    n_gpus: int,
    window_s: float,
    sim: Simulation = Simulation(),
    service_scale: np.ndarray | None = None,
) -> Result:
    """Latency percentiles of `n_gpus` GPUs serving Poisson arrivals at `rate` requests/s.

    `service_scale`, if given, multiplies the service time of the i-th batch formed by
    `service_scale[i]` (random service times, e.g. exponential for M/M/c checks).
    """
    if rate <= 0 or n_gpus < 1:
        raise AdvisorError(f"simulation needs rate > 0 and n_gpus >= 1, got {rate}, {n_gpus}")
    n = sim.warmup + sim.requests
    unit_times, classes = _unit_stream(n, service.shares, sim.seed)
    times = unit_times / rate
    positions = [np.flatnonzero(classes == c) for c in range(len(service.shares))]
    by_class = [times[p].tolist() for p in positions]
    starts, dones, sizes, busy_s, gpu_waits = _run(
        by_class, service, n_gpus, window_s, service_scale
    )
    start, done = np.empty(n), np.empty(n)  # per request, in arrival order
    for pos, s, d, k in zip(positions, starts, dones, sizes):
        start[pos], done[pos] = np.repeat(s, k), np.repeat(d, k)
    latency, wait = done - times, start - times
    measured = latency[sim.warmup:]
    p50, p95, p99 = np.percentile(measured, [50, 95, 99])
    n_batches = sum(len(k) for k in sizes)
    span = done.max() - times[0]
    return Result(
        n_gpus=n_gpus, p50_s=float(p50), p95_s=float(p95), p99_s=float(p99),
        mean_s=float(measured.mean()), mean_wait_s=float(wait[sim.warmup:].mean()),
        mean_batch=n / n_batches, utilization=float(busy_s / (n_gpus * span)),
        gpu_bound=gpu_waits > 0,
    )


def _run(by_class, service: Service, n_gpus: int, window_s: float, scale):
    """The event loop. Per class: start, completion and size of each batch, in formation order."""
    inf = math.inf
    table = service.times_s
    max_batch = service.max_batch
    count = [len(a) for a in by_class]
    heads = [0] * len(by_class)
    oldest = [a[0] if a else inf for a in by_class]
    free = [0.0] * n_gpus  # a heap of the times each GPU frees
    starts = [[] for _ in by_class]
    done = [[] for _ in by_class]
    sizes = [[] for _ in by_class]
    remaining, formed, busy_s, gpu_waits = sum(count), 0, 0.0, 0
    while remaining:
        first = min(oldest)
        c = oldest.index(first)
        arrivals, head, n = by_class[c], heads[c], count[c]
        ready = first + window_s
        full = head + max_batch - 1
        if full < n and arrivals[full] < ready:
            ready = arrivals[full]
        start = free[0]
        if start > ready:
            gpu_waits += 1
        else:
            start = ready
        end = bisect_right(arrivals, start, head, min(head + max_batch, n))
        k = end - head
        t = table[c][k - 1] if scale is None else table[c][k - 1] * scale[formed]
        heapq.heapreplace(free, start + t)
        starts[c].append(start)
        done[c].append(start + t)
        sizes[c].append(k)
        heads[c] = end
        oldest[c] = arrivals[end] if end < n else inf
        remaining -= k
        formed += 1
        busy_s += t
    return starts, done, sizes, busy_s, gpu_waits


# --------------------------------------------------------------------------- fleet sizing


@dataclass(frozen=True)
class Sizing:
    """The smallest fleet meeting the SLO, or `n_gpus` None and the reason none does."""

    n_gpus: int | None
    result: Result | None  # the simulation at n_gpus (at the last size tried when infeasible)
    lower_bound: int  # from throughput at full batches, before any simulation
    trials: tuple[tuple[int, float], ...]  # (N, latency at the SLO quantile) per simulation
    reason: str = ""


def min_gpus_for_throughput(service: Service, rate: float) -> int:
    """Fewest GPUs whose capacity at full batches exceeds the arrival rate (utilization < 1)."""
    return math.floor(rate * service.image_s_at_full_batch()) + 1


def latency_floor_s(service: Service, quantile: float) -> float:
    """A lower bound on the latency quantile for any fleet: the quantile of batch-of-one service
    times over the mix (no request finishes before its own resolution's batch of one would)."""
    order = sorted(range(len(service.shares)), key=lambda c: service.times_s[c][0])
    total, cumulative = sum(service.shares), 0.0
    for c in order:
        cumulative += service.shares[c] / total
        if cumulative >= quantile - 1e-12:
            return service.times_s[c][0]
    return service.times_s[order[-1]][0]


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
) -> Sizing:
    """Smallest N whose simulated latency quantile meets `slo_s` at `rate` requests/s.

    Exponential search up from the throughput lower bound (N, N+1, N+3, N+7, ...), then binary
    search between the last size that failed and the first that met the SLO. The search stops
    early when a failing simulation had no batch waiting for a GPU: more GPUs cannot help then.
    """
    label = f"p{round(quantile * 100)}"
    lower = min_gpus_for_throughput(service, rate)
    floor = latency_floor_s(service, quantile)
    if floor > slo_s:
        return Sizing(None, None, lower, (), (
            f"{label} >= {floor:.2f} s with no queueing at all (batch-of-one service time), "
            f"above the {slo_s:g} s SLO"))
    if lower > max_gpus:
        return Sizing(None, None, lower, (), (
            f"needs at least {lower} GPUs for {rate:.2f} img/s even with full batches; "
            f"max_gpus is {max_gpus}"))
    trials: dict[int, Result] = {}

    def meets(n: int) -> bool:
        trials[n] = simulate_cached(service, rate, n, window_s, sim)
        return trials[n].quantile_s(quantile) <= slo_s

    def sizing(n, reason=""):
        tried = tuple((k, r.quantile_s(quantile)) for k, r in trials.items())
        return Sizing(n if not reason else None, trials[n], lower, tried, reason)

    failed, step, n = lower - 1, 1, lower
    while not meets(n):
        got = trials[n].quantile_s(quantile)
        if not trials[n].gpu_bound:
            return sizing(n, (
                f"{label} {got:.2f} s > {slo_s:g} s even with a GPU always free "
                f"(batching window {window_s:g} s + batch service)"))
        if n >= max_gpus:
            return sizing(n, f"{label} {got:.2f} s > {slo_s:g} s at max_gpus {max_gpus}")
        failed, n, step = n, min(n + step, max_gpus), step * 2
    met = n
    while met - failed > 1:
        mid = (met + failed) // 2
        if meets(mid):
            met = mid
        else:
            failed = mid
    return sizing(met)
