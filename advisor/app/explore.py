"""The Explore page: measured records and fitted curves along image size or batch, and the
validation report as tables."""
from __future__ import annotations

import pandas as pd


from advisor.contract import (
    DEFAULT_CAPTION_TOKENS, DEFAULT_STEPS, QUANTIZATIONS, Config, Setting, with_precision,
)

SQUARE_SIDES = tuple(range(512, 2048 + 1, 128))
# The validation report's splits and targets as a person reads them.
SPLITS = {"kfold": "K-fold", "shape_out": "image size held out", "gpu_out": "GPU held out",
          "machine_out": "machine held out"}
TARGETS = {"total_s": "latency of one batch", "denoise_step_s": "one denoising step",
           "peak_memory": "peak memory (NVML)", "allocated_memory": "torch allocated memory"}
TARGET_UNITS = {"total_s": "s", "denoise_step_s": "s", "peak_memory": "GB",
                "allocated_memory": "GB"}
BATCHES = (1, 2, 3, 4, 6, 8, 12, 16)


def curve_queries(axis: str, gpu: str, setting: Setting, height: int, width: int,
                  batch: int) -> list[tuple[str, Config]]:
    """Queries along one Explore axis: square resolutions at `batch`, or batches at HxW."""
    if axis == "resolution":
        return [(gpu, Config(height=s, width=s, batch=batch, **setting.as_dict()))
                for s in SQUARE_SIDES]
    return [(gpu, Config(height=height, width=width, batch=b, **setting.as_dict()))
            for b in BATCHES]


def measured_setting(frame: pd.DataFrame, gpu: str, setting: Setting) -> pd.DataFrame:
    """The records (advisor.app.measurements.records_frame) of one GPU and setting, smallest
    work first."""
    keep = frame.gpu == gpu
    for key, value in setting.as_dict().items():
        keep &= frame[key] == value
    return frame[keep].sort_values(["megapixels", "batch", "config"])


def measured_along(frame: pd.DataFrame, axis: str, gpu: str, setting: Setting, height: int,
                   width: int, batch: int) -> pd.DataFrame:
    """Records on one Explore axis: same GPU and setting, default steps/caption, no CFG."""
    f = measured_setting(frame, gpu, setting)
    keep = ~f.cfg & (f.steps == DEFAULT_STEPS) & (f.caption_tokens == DEFAULT_CAPTION_TOKENS)
    if axis == "resolution":
        keep &= f.batch == batch
    else:
        keep &= (f.height == height) & (f.width == width)
    return f[keep]


def quantized_along(frame: pd.DataFrame, axis: str, gpu: str, setting: Setting, height: int,
                    width: int, batch: int) -> pd.DataFrame:
    """The measured_along records of the same GPU and setting at the other precisions that are
    quantized (lossy): their points beside the curve show what quantizing changes."""
    return pd.concat([measured_along(frame, axis, gpu, with_precision(setting, q), height,
                                     width, batch)
                      for q in QUANTIZATIONS if q != setting.precision])


def predicted_frame(models, queries: list[tuple[str, Config]]) -> pd.DataFrame:
    """The predictions of `queries` (one predict_many) as a table: figures, their intervals and
    where each came from."""
    rows = []
    for p in models.predict_many(queries):
        c, lat, mem = p.config, p.latency, p.memory
        rows.append({
            "resolution": c.shape_label(), "megapixels": c.pixels / 1e6, "batch": c.batch,
            "latency_s": lat.total_s, "latency_lo_s": lat.interval_s[0],
            "latency_hi_s": lat.interval_s[1], "img_per_s": p.images_per_s,
            "peak_memory_gb": mem.nvml_gb, "memory_lo_gb": mem.nvml_interval_gb[0],
            "memory_hi_gb": mem.nvml_interval_gb[1], "memory_needed_gb": mem.needed_gb,
            "capacity_gb": mem.capacity_gb, "fits": p.fits,
            "achieved_tflops": p.achieved_tflops, "mfu_pct": 100 * p.mfu,
            "source": p.source, "source_detail": p.source_detail, "interval_basis": lat.basis,
        })
    return pd.DataFrame(rows)


def model_row(predicted: pd.DataFrame) -> pd.Series:
    """The first model-made (not measured) row of a predicted frame: what the curve rests on."""
    made = predicted[predicted.source != "measured"]
    return (made if len(made) else predicted).iloc[0]


def validation_frames(report: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics per split and target, residual per held-out point) of the validation report
    (advisor.cache.validation_of)."""
    metrics = [
        {"split": SPLITS.get(split, split), "target": target,
         **{k: m.get(k) for k in ("mape", "median_ape", "max_ape", "coverage", "n")}}
        for split, targets in report["metrics"].items()
        for target, m in _targets(targets)
    ]
    return pd.DataFrame(metrics), pd.DataFrame(report["residuals"])


def _targets(metrics: dict):
    """(target, its metrics) of one split: the targets, then the latency by regime."""
    for target, m in metrics.items():
        if isinstance(m, dict) and "mape" in m:
            yield TARGETS.get(target, target), m
    for regime, m in (metrics.get("by_regime") or {}).items():
        yield f"{TARGETS['total_s']}, {regime.replace('_', '-')}", m


def machine_frame(report: dict) -> pd.DataFrame:
    """One row per config measured on two machines or more of one GPU: how far apart their
    totals are, by regime (validation.machine_spread)."""
    return pd.DataFrame([
        {"regime": regime.replace("_", "-"), "gpu": c["gpu"], "config": c["config"],
         "machines": c["machines"], "spread_pct": c["spread_pct"]}
        for regime, m in (report.get("machines") or {}).items() for c in m["configs"]],
        columns=["regime", "gpu", "config", "machines", "spread_pct"])
