"""What a load test measured, and the planner's predictions beside it.

- `measured`: latency percentiles (arrival to finish: queue + window + service) of the requests
  that arrived after the warm-up, the p95's confidence interval (a circular block bootstrap: the
  latencies of neighbouring requests share a queue, so single requests cannot be resampled),
  throughput, GPU busy fraction, batch-size histogram, errors.
- `predicted` (same arrivals): the run's own arrival trace replayed through the planner's policy
  (`advisor.dispatch.replay`) with the fitted service times; percentiles over the same requests
  and the per-request error. No sampling noise: it checks the service-time model and the policy.
  Its `measured_service` block replays the same arrivals with the run's own service times (the
  median per resolution and batch size), which checks the policy alone: where it matches the
  measurement and the fitted replay does not, the gap is the service-time model's.
- `predicted_steady`: the planner's long simulation (`advisor.queueing.simulate`) at the run's
  rate, and how long a run must be for its p95 to land within 10% of the long-run p95 (a long
  simulation cut into runs of the measured length).
- `soak`: memory slopes per hour with 95% bounds over the settled second half of the run (a
  caching allocator grows its pool in steps while it meets new peak demands; a leak keeps
  growing after that), the rise before it, service-time drift, errors.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from advisor.contract import Config
from advisor.dispatch import replay
from advisor.loadtest.config import LoadConfig
from advisor.loadtest.run import Trace
from advisor.queueing import Service, Simulation, latencies, quantile_range, simulate

CI_LEVEL = 0.90
BOOTSTRAP_RESAMPLES = 1000
RUN_LENGTH_TOLERANCE = 0.10  # a run "long enough": 90% of such runs' p95 within 10% of long-run
LONG_RUN_REQUESTS = 60_000
MIN_SLOPE_SAMPLES = 8


def percentiles(values) -> dict:
    if len(values) == 0:
        return {"p50_s": None, "p95_s": None, "p99_s": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_s": float(p50), "p95_s": float(p95), "p99_s": float(p99)}


def p95_interval(latencies: np.ndarray, level: float = CI_LEVEL, seed: int = 0):
    """Circular block bootstrap interval of the p95 (blocks of about sqrt(n) requests)."""
    n = len(latencies)
    if n < 20:
        return None
    block = max(1, int(round(math.sqrt(n))))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, math.ceil(n / block)))
    rows = (starts[:, :, None] + np.arange(block)).reshape(BOOTSTRAP_RESAMPLES, -1)[:, :n] % n
    p95s = np.percentile(latencies[rows], 95, axis=1)
    lo, hi = np.percentile(p95s, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def measured_mask(trace: Trace, config: LoadConfig) -> np.ndarray:
    """Requests that count: arrived in the measured window, served without error."""
    a = trace.arrival_s
    return ((a >= config.warmup_s) & (a < config.warmup_s + config.duration_s)
            & ~np.isnan(trace.finish_s) & ~trace.error)


def measured(trace: Trace, config: LoadConfig) -> dict:
    mask = measured_mask(trace, config)
    latency = (trace.finish_s - trace.arrival_s)[mask]
    in_window = (trace.arrival_s >= config.warmup_s)
    served = ~np.isnan(trace.finish_s) & ~trace.error
    span = (np.nanmax(trace.finish_s[in_window & served]) - config.warmup_s
            if (in_window & served).any() else math.nan)
    batches = {}
    for b, size in zip(trace.batch[served], trace.batch_size[served]):
        batches[int(b)] = int(size)
    histogram = {str(k): v for k, v in sorted(_counts(batches.values()).items())}
    out = {
        **percentiles(latency),
        "p95_ci_s": p95_interval(latency),
        "ci_level": CI_LEVEL,
        "mean_s": float(latency.mean()) if len(latency) else None,
        "measured_requests": int(mask.sum()),
        "served_requests": int(served.sum()),
        "unserved_requests": int(np.isnan(trace.finish_s).sum()),
        "error_requests": int(trace.error.sum()),
        "errors": trace.errors,
        "throughput_img_per_s": (float((in_window & served).sum() / span)
                                 if span and span > 0 else None),
        "utilization": (None if trace.busy_s is None or not trace.wall_s
                        else float(trace.busy_s / trace.wall_s)),
        "batch_size_histogram": histogram,
        "mean_batch": (float(np.mean(list(batches.values()))) if batches else None),
        "stopped": trace.stopped,
        "wall_s": trace.wall_s,
    }
    return out


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# --------------------------------------------------------------------------- predictions


def service_table(models, gpu: str, config: LoadConfig) -> tuple[Service, dict]:
    """The fitted service time of every batch size 1..max_batch at every resolution of the mix
    (one `predict_many` call), as the planner's `Service`, and where the figures came from."""
    queries = [(gpu, Config(height=r.height, width=r.width, batch=k, steps=config.steps,
                            caption_tokens=config.caption_tokens, **config.setting))
               for r in config.resolutions for k in range(1, config.max_batch + 1)]
    preds = models.predict_many(queries)
    m = config.max_batch
    times = tuple(tuple(p.latency.total_s for p in preds[i * m:(i + 1) * m])
                  for i in range(len(config.resolutions)))
    basis = {"model_version": getattr(models, "model_version", None),
             "sources": sorted({p.source for p in preds}),
             "service_s": {r.label: list(t) for r, t in zip(config.resolutions, times)}}
    return Service(times_s=times, shares=config.shares), basis


def same_arrivals(trace: Trace, config: LoadConfig, service: Service) -> tuple[dict, np.ndarray]:
    """The run's arrivals replayed through the planner's policy with `service`'s times: the
    percentiles over the requests the measurement counts, the per-request error, and each
    request's predicted finish."""
    served = ~np.isnan(trace.finish_s)  # an interrupted run: replay what it served
    times, classes = trace.arrival_s[served], trace.resolution[served]
    _, finish, _ = replay(times, classes, len(config.resolutions), config.max_batch,
                          config.window_s, lambda c, k, _: service.times_s[c][k - 1],
                          n_gpus=config.replicas)
    predicted_finish = np.full(len(trace.arrival_s), np.nan)
    predicted_finish[served] = finish
    mask = measured_mask(trace, config)
    predicted = predicted_finish[mask] - trace.arrival_s[mask]
    actual = trace.finish_s[mask] - trace.arrival_s[mask]
    out = percentiles(predicted)
    if len(actual):
        rel = np.abs(predicted - actual) / actual
        out["request_error_median_pct"] = float(100 * np.median(rel))
        out["request_error_p90_pct"] = float(100 * np.percentile(rel, 90))
        m95 = np.percentile(actual, 95)
        out["p95_error_pct"] = float(100 * (out["p95_s"] - m95) / m95)
    return out, predicted_finish


def measured_service(trace: Trace, config: LoadConfig, fitted: Service) -> tuple[Service, dict]:
    """The run's own service time per resolution and batch size (the median over its batches),
    the fitted one where no batch of that size and resolution ran; and which are the run's."""
    rows = trace.batch_rows(~np.isnan(trace.finish_s) & ~trace.error)
    service = trace.finish_s[rows] - trace.start_s[rows]
    times, from_run = [], []
    for c, fitted_c in enumerate(fitted.times_s):
        row_t, row_own = [], []
        for k, t_fit in enumerate(fitted_c, start=1):
            sel = (trace.resolution[rows] == c) & (trace.batch_size[rows] == k)
            row_t.append(float(np.median(service[sel])) if sel.any() else t_fit)
            row_own.append(bool(sel.any()))
        times.append(tuple(row_t))
        from_run.append(row_own)
    basis = {"service_s": {r.label: list(t) for r, t in zip(config.resolutions, times)},
             "from_run": {r.label: own for r, own in zip(config.resolutions, from_run)}}
    return Service(times_s=tuple(times), shares=fitted.shares), basis


def steady_state(config: LoadConfig, service: Service, rate: float, measured_n: int,
                 measured_ci) -> dict:
    """The planner's long simulation at `rate`, whether the measured CI holds its p95, and how
    many requests a run needs for its p95 to fall within RUN_LENGTH_TOLERANCE of it."""
    result = simulate(service, rate, config.replicas, config.window_s, Simulation())
    out = {"p50_s": result.p50_s, "p95_s": result.p95_s, "p99_s": result.p99_s,
           "utilization": result.utilization, "mean_batch": result.mean_batch,
           "simulation": Simulation().describe()}
    out.update(run_length(config, service, rate, measured_n, result.p95_s))
    if measured_ci is not None:
        out["inside_measured_ci"] = bool(measured_ci[0] <= result.p95_s <= measured_ci[1])
    return out


def run_length(config: LoadConfig, service: Service, rate: float, n: int,
               long_p95: float) -> dict:
    """Spread of the p95 of runs of `n` requests (a long simulation cut into such runs), and
    the shortest run length (doubling from n) whose 90% range is within the tolerance."""
    if n < 20:
        return {"run_p95_range_s": None, "requests_needed": None, "long_enough": False,
                "run_length_note": f"only {n} measured requests: too few for a p95"}
    total = max(LONG_RUN_REQUESTS, 20 * n)
    latency = latencies(service, rate, config.replicas, config.window_s,
                        Simulation(requests=total, warmup=total // 20))

    def spread(k: int):
        return quantile_range(latency, k, 0.95)

    here = spread(n)
    needed, k = None, n
    while (s := spread(k)) is not None:
        if s[0] >= (1 - RUN_LENGTH_TOLERANCE) * long_p95 and \
                s[1] <= (1 + RUN_LENGTH_TOLERANCE) * long_p95:
            needed = k
            break
        k *= 2
    long_enough = needed is not None and needed <= n
    if long_enough:
        note = f"{n} requests: long enough (90% of such runs within 10% of the long-run p95)"
    elif needed is not None:
        note = (f"{n} requests is too short: runs of {needed} requests ({needed / rate:.0f} s "
                f"at {rate:g}/s) hold the p95 within 10% of the long-run {long_p95:.2f} s")
    else:
        note = (f"{n} requests is too short; more than {k // 2} requests "
                f"({k / 2 / rate:.0f} s at {rate:g}/s) are needed for a p95 within 10% "
                f"of the long-run {long_p95:.2f} s")
    return {"run_p95_range_s": None if here is None else [float(x) for x in here],
            "requests_needed": needed, "long_enough": long_enough, "run_length_note": note}


# --------------------------------------------------------------------------- soak


def slope_per_h(t_s, values, level: float = 0.95, resolution: float = 0.0) -> dict | None:
    """Least-squares slope per hour with a `level` interval, its width widened for the serial
    correlation of the residuals (effective sample size from the lag-1 autocorrelation), and at
    least `resolution` (the smallest change the figure shows) over the time span: a flat series
    bounds the slope by what a single step would have shown, not by zero."""
    t, y = np.asarray(t_s, float) / 3600.0, np.asarray(values, float)
    keep = np.isfinite(t) & np.isfinite(y)
    t, y = t[keep], y[keep]
    n = len(t)
    if n < MIN_SLOPE_SAMPLES or np.ptp(t) == 0:
        return None
    floor = resolution / np.ptp(t)
    if np.ptp(y) == 0:
        return {"slope_per_h": 0.0, "ci": [-floor, floor], "samples": n}
    fit = stats.linregress(t, y)
    resid = y - (fit.intercept + fit.slope * t)
    r1 = float(np.corrcoef(resid[:-1], resid[1:])[0, 1]) if np.std(resid) > 0 else 0.0
    r1 = min(max(r1 if np.isfinite(r1) else 0.0, 0.0), 0.95)
    n_eff = max(3.0, n * (1 - r1) / (1 + r1))
    se = fit.stderr * math.sqrt((n - 2) / max(n_eff - 2, 1.0))
    half = max(stats.t.ppf(0.5 + level / 2, max(n_eff - 2, 1.0)) * se, floor)
    return {"slope_per_h": float(fit.slope), "ci": [float(fit.slope - half),
                                                    float(fit.slope + half)], "samples": n}


MEMORY_KEYS = ("allocated_mb", "reserved_mb", "nvml_used_mb", "host_rss_mb")
MEMORY_RESOLUTION_MB = 2.0  # the allocator's smallest segment (2 MiB); NVML counts whole MiB
SETTLED_FRACTION = 0.5  # slopes over the last half of the soak


def soak(trace: Trace, config: LoadConfig) -> dict:
    """Per memory figure: the slope per hour over the settled last half of the soak with its 95%
    interval, and the rise over the first half; service-time drift; a verdict per figure."""
    after = [s for s in trace.samples if s["t_s"] >= config.warmup_s]
    slopes, verdicts = {}, []
    for key in MEMORY_KEYS:
        points = np.asarray([(s["t_s"], s[key]) for s in after if s.get(key) is not None])
        if len(points) == 0:
            continue
        t, y = points[:, 0], points[:, 1]
        split = t[0] + (1 - SETTLED_FRACTION) * (t[-1] - t[0])
        settled = t >= split
        fit = slope_per_h(t[settled], y[settled], resolution=MEMORY_RESOLUTION_MB)
        if fit is None:
            continue
        fit["window_s"] = [float(split), float(t[-1])]
        fit["first_half_mb"] = [float(y[0]), float(y[~settled].max() if (~settled).any()
                                                    else y[0])]
        slopes[key] = fit
        verdicts.append(_memory_verdict(key, fit))
    drift = service_drift(trace, config)
    if drift is not None:
        lo, hi = drift["ci"]
        verdicts.append(f"service time drifts {drift['slope_per_h']:+.1f}% per hour (95% "
                        f"interval {lo:+.1f} to {hi:+.1f}; {drift['samples']} batches)")
    verdicts.append(f"{int(trace.error.sum())} request(s) failed")
    main_key = next((k for k in MEMORY_KEYS if k in slopes), None)
    return {
        "memory_slope_mb_per_h": slopes[main_key]["slope_per_h"] if main_key else None,
        "memory_slope_key": main_key,
        "memory_slopes": slopes,
        "service_drift_pct_per_h": drift,
        "verdict": verdicts if slopes else ["too few memory samples for a slope", *verdicts],
    }


def _memory_verdict(key: str, fit: dict) -> str:
    lo, hi = fit["ci"]
    start, end = fit["window_s"]
    window = f"over the last {end - start:.0f} s"
    first, peak = fit["first_half_mb"]
    rise = (f"rose {first:,.0f} -> {peak:,.0f} MB in the first half, then "
            if peak - first > MEMORY_RESOLUTION_MB else "")
    if lo > 0:
        return (f"{key}: {rise}grows {fit['slope_per_h']:,.1f} MB/h {window} (95% interval "
                f"{lo:,.1f} to {hi:,.1f})")
    return f"{key}: {rise}no leak detected within {max(abs(lo), abs(hi)):,.1f} MB/h {window}"


def service_drift(trace: Trace, config: LoadConfig) -> dict | None:
    """Slope of each batch's service time relative to the median of its (resolution, size), in
    % per hour, with a 95% interval: a GPU that slows down (clocks, fragmentation) shows here."""
    i = trace.batch_rows(~np.isnan(trace.finish_s) & ~trace.error
                         & (trace.arrival_s >= config.warmup_s))
    if not len(i):
        return None
    service = trace.finish_s[i] - trace.start_s[i]
    keys = trace.resolution[i] * 1000 + trace.batch_size[i]
    relative = np.empty(len(i))
    for key in np.unique(keys):
        sel = keys == key
        relative[sel] = 100 * service[sel] / np.median(service[sel])
    return slope_per_h(trace.start_s[i], relative)
