"""Plotly figures for the dashboard, built from the tables of the advisor.app modules (no
streamlit)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from advisor.app.explore import TARGET_UNITS, TARGETS, model_row
from advisor.contract import QUANTIZATIONS

SOURCE_COLORS = {"measured": "#1a7f37", "fitted": "#1f6feb", "transferred": "#bf8700"}
OOM_COLOR = "#cf222e"
QUANTIZED_COLORS = dict(zip(QUANTIZATIONS, ("#8250df", "#bf3989", "#0a7c86")))
AXIS_TITLES = {"megapixels": "image size (megapixels)", "batch": "batch size"}


def _layout(fig: go.Figure, title: str, x: str, y_title: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=AXIS_TITLES.get(x, x), yaxis_title=y_title,
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 50, "b": 10},
                      hovermode="closest", template="plotly_white")
    return fig


def curve_figure(predicted: pd.DataFrame, measured: pd.DataFrame, x: str, y: str, lo: str,
                 hi: str, title: str, y_title: str, limit: float | None = None,
                 ooms: pd.DataFrame | None = None,
                 quantized: pd.DataFrame | None = None, limit_label: str = "") -> go.Figure:
    """Predicted curve with its interval band, measured points on top; optionally the GPU's
    memory as a horizontal limit (`limit_label`: what the figure is, catalog GPU.capacity_note)
    with out-of-memory configs marked on it, and measured points of quantized precisions
    (diamonds, one colour each, marked lossy)."""
    fig = go.Figure()
    source = model_row(predicted).source
    color = SOURCE_COLORS.get(source, SOURCE_COLORS["fitted"])
    band_x = pd.concat([predicted[x], predicted[x][::-1]])
    band_y = pd.concat([predicted[hi], predicted[lo][::-1]])
    fig.add_trace(go.Scatter(x=band_x, y=band_y, fill="toself", fillcolor=color, opacity=0.15,
                             line={"width": 0}, hoverinfo="skip", name="90% interval"))
    fig.add_trace(go.Scatter(
        x=predicted[x], y=predicted[y], mode="lines+markers", line={"color": color},
        marker={"size": 5}, name=f"{source} (model)",
        customdata=predicted[["resolution", "source"]],
        hovertemplate="%{customdata[0]} → %{y:.3g} (%{customdata[1]})<extra></extra>"))
    lossy = bool(len(measured)) and measured.precision.isin(QUANTIZATIONS).any()
    groups = [(measured, "measured (lossy)" if lossy else "measured", SOURCE_COLORS["measured"],
               "diamond-open" if lossy else "circle-open")] + [
        (part, f"measured {q} (lossy)", QUANTIZED_COLORS[q], "diamond-open")
        for q, part in (quantized.groupby("precision") if quantized is not None else ())]
    for points, name, point_color, symbol in groups:
        if not len(points):
            continue
        fig.add_trace(go.Scatter(
            x=points[x], y=points[y], mode="markers", name=name,
            marker={"color": point_color, "size": 9, "line": {"width": 2}, "symbol": symbol},
            customdata=points[["resolution", "batch", "source", "precision"]],
            hovertemplate="%{customdata[0]} batch %{customdata[1]} %{customdata[3]} → "
                          "%{y:.3g}<br>measured: %{customdata[2]}<extra></extra>"))
    if limit is not None:
        fig.add_hline(y=limit, line={"color": OOM_COLOR, "dash": "dash"},
                      annotation_text=f"GPU memory {limit:.1f} GB"
                      + (f": {limit_label}" if limit_label else ""),
                      annotation_position="top left")
    if ooms is not None and len(ooms):
        fig.add_trace(go.Scatter(
            x=ooms[x], y=[limit] * len(ooms), mode="markers", name="out of memory (measured)",
            marker={"color": OOM_COLOR, "size": 12, "symbol": "x"},
            customdata=ooms[["resolution", "batch", "source"]],
            hovertemplate="OOM at %{customdata[0]} batch %{customdata[1]}<br>"
                          "%{customdata[2]}<extra></extra>"))
    return _layout(fig, title, x, y_title)


def utilization_figure(measured: pd.DataFrame) -> go.Figure:
    """NVML 'GPU utilization' beside model-FLOPs utilization (MFU) for each measured config."""
    fig = go.Figure([
        go.Bar(x=measured.config, y=measured.gpu_util_pct, name="NVML GPU utilization %",
               marker_color="#8c959f"),
        go.Bar(x=measured.config, y=measured.mfu_pct, name="MFU % (achieved / dense peak)",
               marker_color=SOURCE_COLORS["measured"],
               customdata=measured.achieved_tflops,
               hovertemplate="MFU %{y:.1f}%<br>%{customdata:.0f} TFLOP/s achieved<extra></extra>"),
    ])
    fig.update_layout(barmode="group", yaxis_range=[0, 105])
    return _layout(fig, "Busy is not fast: NVML utilization vs tensor-core use (measured)",
                   "measured config (image size, batch, setting)", "percent")


def residuals_figure(residuals: pd.DataFrame, target: str) -> go.Figure:
    """Held-out error (%) against the measured value, one colour per validation split."""
    fig = go.Figure()
    for split, part in residuals[residuals.target == target].groupby("split"):
        fig.add_trace(go.Scatter(
            x=part.measured, y=part.error_pct, mode="markers", name=split, marker={"size": 6},
            customdata=part[["gpu", "config", "record"]],
            hovertemplate="%{customdata[0]} %{customdata[1]}<br>error %{y:.1f}%<br>"
                          "%{customdata[2]}<extra></extra>"))
    fig.add_hline(y=0, line={"color": "#8c959f"})
    fig.update_xaxes(type="log")
    name, unit = TARGETS.get(target, target), TARGET_UNITS.get(target, "")
    return _layout(fig, f"Validation residuals: {name} (held-out, predicted vs measured)",
                   f"measured {name} ({unit}, log)",
                   "error % ((predicted − measured) / measured)")


def parity_figure(compared: pd.DataFrame) -> go.Figure:
    """Your measured batch latency against what the shipped models predicted for it."""
    fig = go.Figure()
    for source, part in compared.groupby("predicted_source"):
        fig.add_trace(go.Scatter(
            x=part.latency_s, y=part.predicted_latency_s, mode="markers",
            name=f"{source} prediction",
            marker={"color": SOURCE_COLORS.get(source), "size": 8},
            customdata=part[["resolution", "batch", "setting", "latency_error_pct"]],
            hovertemplate="%{customdata[0]} ×%{customdata[1]}, %{customdata[2]}<br>"
                          "error %{customdata[3]:+.1f}%<extra></extra>"))
    top = float(max(compared.latency_s.max(), compared.predicted_latency_s.max())) * 1.05
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="perfect prediction",
                             line={"color": "#8c959f", "dash": "dot"}, hoverinfo="skip"))
    return _layout(fig, "Your measurements vs the shipped models' predictions",
                   "measured latency of one batch (s)", "predicted latency (s)")


def cost_latency_figure(options: pd.DataFrame, frontier: pd.DataFrame, slo_s: float,
                        slo_label: str) -> go.Figure:
    """Cost per 1,000 images against the SLO latency at peak; the Pareto frontier as a line.
    Every point is labelled: a ranked option by its GPU, a frontier point outside the ranking
    (another batch or fleet size of a ranked GPU) by its fleet and batch."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=frontier.latency_s, y=frontier.usd_per_1k_images, mode="lines+markers+text",
        name="Pareto frontier (nothing is both cheaper and faster)",
        text=frontier.label.where(frontier["rank"].isna(), ""), textposition="bottom right",
        line={"color": OOM_COLOR, "shape": "hv"}, marker={"size": 7, "color": OOM_COLOR},
        customdata=frontier[["gpu", "setting", "max_batch", "total_gpus"]],
        hovertemplate="%{customdata[0]} %{customdata[1]} batch ≤ %{customdata[2]}<br>"
                      "%{customdata[3]} GPUs, $%{y:.2f} per 1k, %{x:.2f} s<extra></extra>"))
    for basis, part in options.groupby("basis", sort=False):
        fig.add_trace(go.Scatter(
            x=part.latency_s, y=part.usd_per_1k_images, mode="markers+text",
            name=f"recommended option, {basis} times", text=part.gpu,
            textposition="top center", marker={"size": 12, "color": SOURCE_COLORS[basis]},
            customdata=part[["gpu", "setting", "max_batch", "total_gpus", "sources"]],
            hovertemplate="%{customdata[0]} %{customdata[1]} batch ≤ %{customdata[2]}<br>"
                          "%{customdata[3]} GPUs, $%{y:.2f} per 1k, %{x:.2f} s<br>"
                          "service times: %{customdata[4]}<extra></extra>"))
    fig.add_vline(x=slo_s, line={"color": "#8c959f", "dash": "dash"},
                  annotation_text=f"SLO {slo_label} ≤ {slo_s:g} s")
    return _layout(fig, "Cost per 1,000 images vs latency at peak",
                   f"{slo_label} latency at peak demand (s)", "USD per 1,000 images")


def fleet_figure(fleet: pd.DataFrame, peak_img_per_s: float) -> go.Figure:
    """GPUs needed as the peak demand scales, for the top options, with the request's own peak
    demand marked. Both axes are plain numbers: demand at the factors re-sized, whole GPUs."""
    fig = go.Figure([go.Scatter(x=part.peak_img_per_s, y=part.total_gpus, mode="lines+markers",
                                name=option)
                     for option, part in fleet.groupby("option", sort=False)])
    demands = sorted(fleet.peak_img_per_s.unique())
    fig.update_xaxes(tickvals=demands, ticktext=[f"{d:.3g}" for d in demands],
                     rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", tickformat="d")
    fig.add_vline(x=peak_img_per_s, line={"color": "#8c959f", "dash": "dash"},
                  annotation_text=f"your peak demand: {peak_img_per_s:.3g} images/s")
    return _layout(fig, "Fleet size vs demand (top picks, re-sized at each demand)",
                   "peak demand (images/s)", "GPUs, spare included")


def throughput_figure(options: pd.DataFrame) -> go.Figure:
    """Images per second one GPU sustains at full batches, per recommended option."""
    fig = go.Figure(go.Bar(
        x=options.gpu, y=options.per_gpu_img_per_s,
        marker_color=[SOURCE_COLORS[b] for b in options.basis],
        text=options.sources, textposition="outside",
        customdata=options[["setting", "max_batch"]],
        hovertemplate="%{x}: %{y:.2f} img/s per GPU<br>%{customdata[0]}, batch ≤ "
                      "%{customdata[1]}<extra></extra>"))
    return _layout(fig, "Throughput per GPU at full batches (label: where the times come from)",
                   "GPU", "images/s per GPU")
