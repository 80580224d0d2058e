"""What an HTTP endpoint adds to the planner's latency, from the timings it reports per request
(`advisor serve` does; `advisor.loadtest.run.SERVER_TIMINGS`).

The planner's latency is the wait for a batch plus the batch's pipeline time. Everything else a
client waits for is the endpoint's overhead: routing to a replica, PNG encoding, the answer's
way back, HTTP on both ends. Per request: overhead = client latency - server batch wait - server
batch time; `http_s` = client latency - the server's own receipt-to-answer time.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from advisor.loadtest.config import LoadConfig
from advisor.loadtest.report import measured_mask, percentiles
from advisor.loadtest.run import Trace


def overhead(trace: Trace, config: LoadConfig) -> dict | None:
    """Per resolution of the mix, over the measured requests: the overhead's median and p95,
    and the medians of its parts; None when the endpoint reported no timings."""
    if not {"queue_s", "service_s"} <= set(trace.server):
        return None
    latency = trace.finish_s - trace.arrival_s
    extra = latency - trace.server["queue_s"] - trace.server["service_s"]
    nan = np.full(len(latency), np.nan)
    http = latency - trace.server.get("server_s", nan)
    mask = measured_mask(trace, config) & np.isfinite(extra)
    out = {}
    for c, r in enumerate(config.resolutions):
        sel = mask & (trace.resolution == c)
        if not sel.any():
            continue
        p = np.percentile(extra[sel], [50, 95])
        out[r.label] = {"requests": int(sel.sum()), "overhead_median_s": float(p[0]),
                        "overhead_p95_s": float(p[1]),
                        **{f"{name}_median_s": _median(values[sel]) for name, values in (
                            ("http", http), ("encode", trace.server.get("encode_s", nan)),
                            ("queue", trace.server["queue_s"]),
                            ("service", trace.server["service_s"]))}}
    return {"by_resolution": out,
            "definition": "overhead = client latency - server batch wait (queue_s) - server "
                          "batch pipeline time (service_s); http = client latency - server_s"}


def with_overhead(trace: Trace, config: LoadConfig, predicted_finish: np.ndarray,
                  by_resolution: dict) -> dict:
    """The same-arrival prediction with each request's resolution's median overhead added: the
    planner's latency as the client sees it, against the measured one."""
    add = np.array([by_resolution.get(r.label, {}).get("overhead_median_s", np.nan)
                    for r in config.resolutions])
    mask = measured_mask(trace, config)
    predicted = (predicted_finish[mask] - trace.arrival_s[mask]
                 + add[trace.resolution[mask].astype(int)])
    actual = trace.finish_s[mask] - trace.arrival_s[mask]
    keep = np.isfinite(predicted)
    out = percentiles(predicted[keep])
    if keep.any():
        m95 = np.percentile(actual[keep], 95)
        out["p95_error_pct"] = float(100 * (out["p95_s"] - m95) / m95)
    out["overhead_s"] = {label: block["overhead_median_s"]
                         for label, block in by_resolution.items()}
    return out


def server_side(trace: Trace) -> Trace:
    """The trace with each request's batch timed by the endpoint's own clock (start 0, finish
    its batch's pipeline seconds), for the replay with the run's own service times; the trace
    itself when the endpoint reported none (its start and finish are the batch's)."""
    if "service_s" not in trace.server:
        return trace
    return replace(trace, start_s=np.zeros(len(trace.arrival_s)),
                   finish_s=trace.server["service_s"].copy())


def _median(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else None
