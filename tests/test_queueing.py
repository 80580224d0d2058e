"""advisor.queueing: the simulation against exact closed forms, and the fleet-size search."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from advisor.errors import AdvisorError
from advisor.queueing import (
    Service, Simulation, _arrivals, gpus_estimate, gpus_lower_bound, latency_floor_s,
    run_quantile_range, simulate, size_fleet,
)

LONG = Simulation(requests=200_000, warmup=10_000, seed=3)
ONE_CLASS_UNIT = Service(times_s=((1.0,),), shares=(1.0,))


def erlang_c(c: int, offered: float) -> float:
    """Probability an arrival waits in M/M/c with offered load `offered` = lambda/mu < c."""
    head = sum(offered**k / math.factorial(k) for k in range(c))
    tail = offered**c / math.factorial(c) * c / (c - offered)
    return tail / (head + tail)


def mmc_latency_quantile(q: float, c: int, lam: float, mu: float) -> float:
    """Exact q-quantile of M/M/c sojourn time T = W + S: W is 0 with probability 1 - C, else
    exponential with rate theta = c mu - lam; S is exponential with rate mu."""
    wait_prob, theta = erlang_c(c, lam / mu), c * mu - lam

    def tail(t: float) -> float:
        both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
        return (1 - wait_prob) * math.exp(-mu * t) + wait_prob * both - (1 - q)

    return brentq(tail, 0.0, 100.0 / min(mu, theta))


@pytest.mark.parametrize("rho", [0.5, 0.7])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho):
    d = 2.0
    service = Service(times_s=((d,),), shares=(1.0,))
    result = simulate(service, rate=rho / d, n_gpus=1, window_s=0.0, sim=LONG)
    assert result.mean_wait_s == pytest.approx(rho * d / (2 * (1 - rho)), rel=0.06)
    assert result.utilization == pytest.approx(rho, rel=0.02)
    assert result.mean_batch == 1.0


@pytest.mark.parametrize("c, lam", [(1, 0.6), (4, 2.5), (8, 6.5)])
def test_mmc_matches_erlang_c(c, lam):
    mu = 1.0
    scale = np.random.default_rng(11).exponential(1.0, LONG.warmup + LONG.requests)
    result = simulate(ONE_CLASS_UNIT, rate=lam, n_gpus=c, window_s=0.0, sim=LONG,
                      service_scale=scale)
    assert result.mean_wait_s == pytest.approx(erlang_c(c, lam / mu) / (c * mu - lam), rel=0.08)
    assert result.p95_s == pytest.approx(mmc_latency_quantile(0.95, c, lam, mu), rel=0.04)
    assert result.p99_s == pytest.approx(mmc_latency_quantile(0.99, c, lam, mu), rel=0.06)


def test_same_seed_same_result_and_other_seed_differs():
    service = Service(times_s=((1.0, 1.5),), shares=(1.0,))
    a = simulate(service, 1.5, 2, 0.1, Simulation(seed=1))
    assert a == simulate(service, 1.5, 2, 0.1, Simulation(seed=1))
    assert a != simulate(service, 1.5, 2, 0.1, Simulation(seed=2))


def test_batches_fill_under_load_and_stay_single_when_idle():
    service = Service(times_s=((1.0, 1.2, 1.4, 1.6),), shares=(1.0,))
    busy = simulate(service, rate=9.0, n_gpus=4, window_s=0.2)
    assert busy.mean_batch > 3.5
    idle = simulate(service, rate=0.01, n_gpus=4, window_s=0.2)
    assert idle.mean_batch == pytest.approx(1.0, abs=0.01)
    # alone in its batch, a request waits exactly the window, then its service
    assert idle.p50_s == pytest.approx(1.2)


def test_batches_hold_one_resolution():
    # two classes whose batches cost the same whatever their size: a mixed batch would be
    # visible as fewer batches than the per-class arrivals allow
    service = Service(times_s=((1.0, 1.0), (3.0, 3.0)), shares=(0.5, 0.5))
    result = simulate(service, rate=0.001, n_gpus=1, window_s=0.0)
    assert result.mean_batch == 1.0
    assert result.p50_s in (1.0, 3.0)


def test_bad_arguments_raise_advisor_error():
    with pytest.raises(AdvisorError):
        simulate(ONE_CLASS_UNIT, rate=0.0, n_gpus=1, window_s=0.0)
    with pytest.raises(AdvisorError):
        simulate(ONE_CLASS_UNIT, rate=1.0, n_gpus=0, window_s=0.0)


MIX = Service(
    times_s=tuple(tuple(base * (1 + 0.5 * k) for k in range(8)) for base in (1.0, 0.6, 0.3)),
    shares=(0.5, 0.3, 0.2),
)


def simpy_latencies(service: Service, rate: float, n_gpus: int, window_s: float,
                    sim: Simulation) -> np.ndarray:
    """The batching policy of advisor.queueing written as a SimPy model (arrival process,
    dispatcher process, GPUs as a Resource), on the same arrival stream: per-request latency."""
    simpy = pytest.importorskip("simpy")
    n = sim.warmup + sim.requests
    times, positions = _arrivals(n, service.shares, sim.seed, rate)
    classes = np.empty(n, dtype=int)
    for c, pos in enumerate(positions):
        classes[pos] = c
    env = simpy.Environment()
    gpus = simpy.Resource(env, capacity=n_gpus)
    queues = [[] for _ in service.shares]  # waiting request indices per resolution class
    done = np.full(n, np.nan)
    signal = [env.event()]  # fires on every arrival

    def source():
        for i, t in enumerate(times):
            yield env.timeout(t - env.now)
            queues[classes[i]].append(i)
            signal[0].succeed()
            signal[0] = env.event()

    def run_batch(batch, c, claim):
        yield env.timeout(service.times_s[c][len(batch) - 1])
        done[batch] = env.now
        gpus.release(claim)

    def dispatcher():
        served = 0
        while served < n:
            while not any(queues):
                yield signal[0]
            c = min((q[0], c) for c, q in enumerate(queues) if q)[1]  # oldest request first
            deadline = times[queues[c][0]] + window_s
            while len(queues[c]) < service.max_batch and env.now < deadline:
                yield signal[0] | env.timeout(deadline - env.now)
            claim = gpus.request()
            yield claim
            batch = queues[c][:service.max_batch]
            del queues[c][:service.max_batch]
            served += len(batch)
            env.process(run_batch(batch, c, claim))

    env.process(source())
    env.process(dispatcher())
    env.run()
    return done - times


# Batches of two fill long before a 0.3 s window at 30 requests/s: a full batch of one class
# is ready while the dispatcher still holds another class's batch open (head-of-line).
PAIRS = Service(times_s=((1.0, 1.2), (0.6, 0.7), (0.3, 0.35)), shares=(0.5, 0.3, 0.2))


@pytest.mark.parametrize("service, rate, n_gpus, window_s", [
    (MIX, 6.0, 4, 0.3), (MIX, 2.0, 2, 0.0), (PAIRS, 30.0, 20, 0.3)])
def test_event_loop_matches_a_simpy_model_of_the_policy(service, rate, n_gpus, window_s):
    sim = Simulation(requests=3000, warmup=300, seed=5)
    latency = simpy_latencies(service, rate, n_gpus, window_s, sim)[sim.warmup:]
    result = simulate(service, rate, n_gpus, window_s, sim)
    assert result.mean_batch > 1.2 or window_s == 0.0  # batching is exercised
    expected = np.percentile(latency, [50, 95, 99]).tolist() + [latency.mean()]
    got = [result.p50_s, result.p95_s, result.p99_s, result.mean_s]
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_the_compiled_event_loop_gives_the_python_loops_every_figure(seed, monkeypatch):
    """advisor/_eventloop.pyx against queueing._loop: the same latency and wait of every request,
    busy time, batches and GPU waits, over random mixes, batch sizes, fleets, windows and
    service scalings (every third case), from one GPU to more than the requests."""
    import advisor.queueing as queueing

    compiled = pytest.importorskip("advisor._eventloop", reason="the extension is not built")
    rng = np.random.default_rng(seed)
    classes, max_batch = int(rng.integers(1, 5)), int(rng.integers(1, 9))
    service = Service(times_s=tuple(tuple(np.sort(rng.uniform(0.05, 3.0, max_batch)).tolist())
                                    for _ in range(classes)),
                      shares=tuple(rng.uniform(0.1, 1.0, classes).tolist()),
                      overhead_s=tuple(rng.uniform(0.0, 0.2, classes).tolist()))
    sim = Simulation(requests=int(rng.integers(10, 3000)), warmup=int(rng.integers(0, 300)),
                     seed=seed)
    n_gpus = int(rng.choice([1, 3, 17, sim.requests + sim.warmup]))
    scale = rng.exponential(1.0, sim.requests + sim.warmup) if seed % 3 == 0 else None
    args = (service, float(rng.uniform(0.5, 30.0)), n_gpus, float(rng.choice([0.0, 0.05, 1.0])),
            sim, scale)
    fast = queueing._served(*args)
    monkeypatch.setattr(queueing, "_eventloop", None)
    slow = queueing._served(*args)
    assert queueing._eventloop is None and compiled.run is not None
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])
    assert fast[2:] == slow[2:]


def test_lower_bounds():
    per_image = MIX.image_s_at_full_batch()
    assert per_image == pytest.approx(sum(s * b * 4.5 / 8 for s, b in zip(MIX.shares, (1, .6, .3))))
    assert gpus_lower_bound(MIX, 10.0) == math.floor(10 * per_image) + 1
    # with an SLO, only 5% of requests may ride in batches slower than it
    one = Service(times_s=((1.0, 1.5, 2.0, 2.5),), shares=(1.0,))
    work = 0.05 * 2.5 / 4 + 0.95 * 1.5 / 2
    assert gpus_lower_bound(one, 10.0, 0.95, slo_s=1.6) == math.floor(10 * work) + 1
    assert gpus_lower_bound(one, 10.0, 0.95, slo_s=0.5) == math.inf
    assert latency_floor_s(MIX, 0.95) == 1.0  # the slowest class holds more than 5% of requests
    assert latency_floor_s(MIX, 0.5) == 0.6  # 0.3 s covers 20%, 0.6 s reaches 50%


def test_gpus_estimate_uses_the_batches_a_window_gathers():
    one = sum(share * times[0] for share, times in zip(MIX.shares, MIX.times_s))
    assert gpus_estimate(MIX, 10.0, window_s=0.0) == pytest.approx(10.0 * one)
    assert gpus_estimate(MIX, 10.0, window_s=100.0) == pytest.approx(
        10.0 * MIX.image_s_at_full_batch())
    # 5 requests/s: one more arrives within 0.2 s of the oldest -> batches of 2
    two = Service(times_s=((1.0, 1.5, 2.0),), shares=(1.0,))
    assert gpus_estimate(two, 5.0, window_s=0.2) == pytest.approx(5.0 * 1.5 / 2)


def test_size_fleet_is_the_smallest_n_meeting_the_slo():
    sizing = size_fleet(MIX, rate=100.0, quantile=0.95, slo_s=5.0, window_s=0.05, max_gpus=500)
    n = sizing.n_gpus
    assert n >= sizing.lower_bound
    assert simulate(MIX, 100.0, n, 0.05).p95_s <= 5.0
    assert simulate(MIX, 100.0, n - 1, 0.05).p95_s > 5.0
    assert sizing.result.p95_s <= 5.0
    # the search simulated only a handful of sizes, never dividing demand by throughput
    assert len(sizing.trials) <= 6


def test_size_fleet_gives_up_above_the_callers_limit():
    full = size_fleet(MIX, rate=100.0, quantile=0.95, slo_s=5.0, window_s=0.05, max_gpus=500)
    n = full.n_gpus
    same = size_fleet(MIX, 100.0, 0.95, 5.0, 0.05, 500, give_up_above=n)
    assert (same.n_gpus, same.gave_up_above) == (n, None)
    short = size_fleet(MIX, 100.0, 0.95, 5.0, 0.05, 500, give_up_above=n - 1)
    assert short.n_gpus is None and short.gave_up_above == n - 1
    assert short.reason == f"needs more than {n - 1} GPUs"
    assert max(k for k, _ in short.trials) == n - 1
    below = size_fleet(MIX, 100.0, 0.95, 5.0, 0.05, 500, give_up_above=full.lower_bound - 1)
    assert below.gave_up_above == full.lower_bound - 1 and below.trials == ()


def test_a_probe_of_the_callers_limit_gives_up_at_once_and_changes_no_answer():
    full = size_fleet(MIX, rate=100.0, quantile=0.95, slo_s=5.0, window_s=0.05, max_gpus=500)
    n = full.n_gpus
    for cap in (n, n + 3):  # meets at the cap: the same search, the same trials
        probed = size_fleet(MIX, 100.0, 0.95, 5.0, 0.05, 500, give_up_above=cap, probe_cap=True)
        plain = size_fleet(MIX, 100.0, 0.95, 5.0, 0.05, 500, give_up_above=cap)
        assert (probed.n_gpus, probed.trials, probed.result) == (n, plain.trials, plain.result)
    short = size_fleet(MIX, 100.0, 0.95, 5.0, 0.05, 500, give_up_above=n - 1, probe_cap=True)
    assert short.n_gpus is None and short.gave_up_above == n - 1
    assert short.reason == f"needs more than {n - 1} GPUs"
    assert [k for k, _ in short.trials] == [n - 1]  # one simulation, at the limit


def test_a_short_test_cuts_the_very_run_the_sizing_simulated():
    from advisor.queueing import _served_cached, latencies

    _served_cached.cache_clear()
    result = simulate(MIX, 100.0, 30, 0.05)
    measured = latencies(MIX, 100.0, 30, 0.05)
    assert _served_cached.cache_info().hits == 1 and not measured.flags.writeable
    assert np.percentile(measured, 95) == pytest.approx(result.p95_s, rel=0, abs=0)


def test_fleet_size_monotone_in_demand():
    sizes = [size_fleet(MIX, rate, 0.95, 5.0, 0.05, 2000).n_gpus for rate in (1, 5, 20, 80, 320)]
    assert sizes == sorted(sizes)
    assert sizes[-1] > sizes[0]


def test_tighter_slo_never_needs_fewer_gpus():
    slos = (20, 8, 5, 4, 3.6, 3)
    sizes = [size_fleet(MIX, 50.0, 0.99, slo, 0.05, 2000).n_gpus or math.inf for slo in slos]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-2] < sizes[-1] == math.inf  # 3 s: no fleet meets it at this window


def test_infeasible_reasons():
    below_floor = size_fleet(MIX, 10.0, 0.95, slo_s=0.9, window_s=0.0, max_gpus=100)
    assert below_floor.n_gpus is None and "batch-of-one service" in below_floor.reason
    assert below_floor.trials == ()
    too_many = size_fleet(MIX, 1000.0, 0.95, slo_s=10.0, window_s=0.0, max_gpus=10)
    assert too_many.n_gpus is None and "max_gpus is 10" in too_many.reason
    # the window alone pushes p95 past the SLO however many GPUs there are
    window_bound = size_fleet(MIX, 1.0, 0.95, slo_s=1.5, window_s=1.0, max_gpus=1000)
    assert window_bound.n_gpus is None and "GPU always free" in window_bound.reason
    assert len(window_bound.trials) < 10


def test_short_runs_see_less_of_the_long_run_tail_near_saturation():
    # M/D/1 at 90% busy: runs of 100 requests mostly measure a p95 below the long run's, and
    # their spread narrows as runs get longer.
    rate = 0.9
    long_p95 = simulate(ONE_CLASS_UNIT, rate, 1, 0.0, LONG).p95_s
    short = run_quantile_range(ONE_CLASS_UNIT, rate, 1, 0.0, 100, 0.95, LONG)
    longer = run_quantile_range(ONE_CLASS_UNIT, rate, 1, 0.0, 10_000, 0.95, LONG)
    assert short[0] < 0.5 * long_p95 < long_p95 < short[1]
    assert short[1] - short[0] > 2 * (longer[1] - longer[0])
    assert run_quantile_range(ONE_CLASS_UNIT, rate, 1, 0.0, 50_000, 0.95, LONG) is None
