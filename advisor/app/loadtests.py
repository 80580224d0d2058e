"""The Load tests page's data: shipped and uploaded results files as a table, latency CDFs
(measured vs predicted on the same arrivals) and memory over time, as Plotly figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from advisor.app.uploads import upload_text
from advisor.loadtest import results

MEMORY_SERIES = {"allocated_mb": "torch allocated", "reserved_mb": "torch reserved",
                 "nvml_used_mb": "NVML used", "host_rss_mb": "host RSS"}


def shipped() -> tuple[list[dict], list[str]]:
    return results.load_dir(results.LOADTESTS_DIR)


def parse_upload(name: str, data: bytes) -> dict:
    """An uploaded results file, validated (AdvisorError naming the file and field)."""
    doc = results.parse(upload_text(name, data), name)
    doc["_source"] = f"upload: {name}"
    return doc


def _get(block, key):
    return (block or {}).get(key)


def _pct(fraction):
    return None if fraction is None else 100 * fraction


def summary_frame(docs: list[dict]) -> pd.DataFrame:
    """One row per load test: rate, GPU busy (a fraction, and in percent as shown), measured
    and predicted percentiles."""
    rows = []
    for d in docs:
        m, p, s = d["measured"], d.get("predicted"), d.get("predicted_steady")
        ci = m.get("p95_ci_s") or [None, None]
        rows.append({
            "source": d.get("_source"), "name": d.get("name"), "gpu": d["gpu"],
            "mode": d.get("mode"), "rate_per_s": d["rate_per_s"], "duration_s": d["duration_s"],
            "duration_min": d["duration_s"] / 60, "requests": d["requests"],
            "utilization": m.get("utilization"), "utilization_pct": _pct(m.get("utilization")),
            "p95_s": m.get("p95_s"), "p95_ci_low_s": ci[0], "p95_ci_high_s": ci[1],
            "p99_s": m.get("p99_s"),
            "predicted_p95_s": _get(p, "p95_s"), "predicted_p99_s": _get(p, "p99_s"),
            "p95_error_pct": _get(p, "p95_error_pct"),
            "policy_p95_error_pct": _get(_get(p, "measured_service"), "p95_error_pct"),
            "p95_ci": None if ci[0] is None else f"{ci[0]:.2f}-{ci[1]:.2f}",
            "steady_p95_s": _get(s, "p95_s"), "steady_utilization": _get(s, "utilization"),
            "steady_utilization_pct": _pct(_get(s, "utilization")),
            "run_length": _get(s, "run_length_note"),
            "memory_slope_mb_per_h": m.get("memory_slope_mb_per_h"),
        })
    return pd.DataFrame(rows)


def latencies(doc: dict) -> tuple[np.ndarray, np.ndarray]:
    """Measured and predicted (same arrivals) latencies of the requests the run measured."""
    t, config = doc.get("trace") or {}, doc["config"]
    arrival = np.asarray(t.get("arrival_s", []), dtype=float)
    if not len(arrival):
        return np.array([]), np.array([])
    finish = np.asarray(t["finish_s"], dtype=float)
    predicted = np.asarray(t["predicted_finish_s"], dtype=float)
    errors = np.asarray(t["error"], dtype=bool)
    warm, dur = config.get("warmup_s", 0.0), doc["duration_s"]
    mask = (arrival >= warm) & (arrival < warm + dur) & ~np.isnan(finish) & ~errors
    measured = (finish - arrival)[mask]
    pred = (predicted - arrival)[mask]
    return measured, pred[~np.isnan(pred)]


def _cdf(values: np.ndarray):
    x = np.sort(values)
    return x, np.arange(1, len(x) + 1) / len(x)


def cdf_figure(doc: dict) -> go.Figure:
    measured, predicted = latencies(doc)
    fig = go.Figure()
    for values, name, color in ((measured, "measured", "#1a7f37"),
                                (predicted, "predicted (same arrivals)", "#1f6feb")):
        if len(values):
            x, y = _cdf(values)
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line={"color": color}))
    steady = _get(doc.get("predicted_steady"), "p95_s")
    if steady is not None:
        fig.add_vline(x=steady, line_dash="dot",
                      annotation_text=f"steady-state p95 {steady:.2f} s (long-run simulation)")
    fig.add_hline(y=0.95, line_dash="dash", line_color="#888", annotation_text="p95",
                  annotation_position="bottom right")
    fig.update_layout(title=f"Latency CDF: {doc.get('name')}",
                      xaxis_title="latency, arrival to finish (s)",
                      yaxis_title="share of requests at or below", template="plotly_white",
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 50, "b": 10})
    return fig


def memory_frame(doc: dict) -> pd.DataFrame:
    rows = [{"t_s": s["t_s"], "series": label, "mb": s[key]}
            for s in doc.get("samples", []) for key, label in MEMORY_SERIES.items()
            if s.get(key) is not None]
    return pd.DataFrame(rows, columns=["t_s", "series", "mb"])


def memory_figure(doc: dict) -> go.Figure:
    frame = memory_frame(doc)
    fig = go.Figure()
    for label, part in frame.groupby("series", sort=False):
        fig.add_trace(go.Scatter(x=part.t_s / 60, y=part.mb, mode="lines", name=label))
    fig.update_layout(title=f"Memory over time: {doc.get('name')}",
                      xaxis_title="time since the start (min)", yaxis_title="memory (MB)",
                      template="plotly_white",
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 50, "b": 10})
    return fig


def steady_note(doc: dict) -> str:
    """Why the steady-state p95 line may sit away from the measured curve's p95."""
    s = doc.get("predicted_steady") or {}
    if s.get("p95_s") is None:
        return ""
    note = (f"Dotted line: the p95 of the planner's long-run simulation at the same rate "
            f"({s['p95_s']:.2f} s), the figure a plan sizes on. A run sees only its own "
            "arrivals: a short one can land well below or above it")
    spread = s.get("run_p95_range_s")
    if spread:
        note += (f" (runs as long as this one measure a p95 of {spread[0]:.2f}-{spread[1]:.2f} s "
                 "in 90% of cases)")
    return note + "; the blue curve replays this run's own arrivals and compares like with like."


def soak_lines(doc: dict) -> list[str]:
    """A soak's verdict lines, each memory series named in words (`allocated_mb: ...` reads
    "torch allocated: ...")."""
    lines = (doc.get("soak") or {}).get("verdict", [])
    return [next((f"{label}{line[len(key):]}" for key, label in MEMORY_SERIES.items()
                  if line.startswith(f"{key}:")), line) for line in lines]
