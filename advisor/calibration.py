"""Interval widths from out-of-fold residuals: `fit_calibrated` = fit_models + calibrate.

Calibration is cross-validation (advisor.validation), which refits through advisor.fit; this
module sits on top of both, so neither imports it.
"""
from __future__ import annotations

from dataclasses import replace

from advisor.features import GpuSpec
from advisor.fit import fit_models
from advisor.intervals import Intervals, conformal_bounds, published_families
from advisor.models import Models
from advisor.published_split import published_residuals
from advisor.validation import cross_predict, fold_metrics, quantized, regime_of

CALIBRATION_FOLDS = 5
# Interval kind -> the validation target whose out-of-fold residuals set its width.
INTERVAL_TARGETS = {"latency": "total_s", "memory": "peak_memory",
                    "allocated": "allocated_memory"}


def fit_calibrated(records: list[dict], specs: dict[str, GpuSpec], problems: list[str] = (),
                   model_version: str = "uncached", capped: list[dict] = (),
                   published: list = ()) -> Models:
    """Models fitted on `records` (and the memory-capped ones) with intervals calibrated on
    their own cross-validation; for GPUs of architectures never probed, the architecture term
    of the latency interval from a stated prior updated by the misses of the `published` points
    of the software this tool models on that GPU's family (intervals.ArchitectureWidth; the
    points fit nothing)."""
    models = fit_models(records, specs, problems, model_version=model_version, capped=capped)
    calibrate(models, specs)
    models.recalibrate(published_misses=published_families(
        [r for r in published_residuals(models, published) if r["modelled_stack"]], specs))
    return models


def calibrate(models: Models, specs: dict[str, GpuSpec]) -> None:
    """Set `models.intervals` and `models.calibration` from out-of-fold residuals of the
    records it was fitted on. Fitted predictions (a probed GPU): K-fold residuals pooled with
    leave-one-shape-out residuals of settings still probed at another shape, since a fitted
    prediction is usually of a shape that was not measured. Transferred predictions:
    leave-one-GPU-out residuals (when more than one GPU was probed) of the settings another GPU
    measured: one that only the held-out GPU ran was predicted from no run of it at all, which
    is the never-probed setting's situation (its own widening), not the transfer's. The
    quantized precisions' fitted predictions get their own widths from their own points (their
    few shapes miss more), so the compute precisions' stay what they were; a quantized K-fold
    point counts where its precision had training records (validation.quantized_split says
    why). The K-fold summary is the compute precisions' (what `advisor validate` heads with)."""
    records = models.records
    evidenced = lambda points: [p for p in points if not quantized(p) or p["precision_probed"]]
    kfold = evidenced(cross_predict(records, specs, "kfold", fit_models,
                                    folds=CALIBRATION_FOLDS))
    shapes = [p for p in cross_predict(records, specs, "shape_out", fit_models)
              if p["setting_probed"]]
    gpu_out = [p for p in cross_predict(records, specs, "gpu_out", fit_models)
               if p["setting_anywhere"]] if len(models.probed) > 1 else []
    host = lambda p: regime_of(p) == "host_bound"
    intervals = dict(models.intervals)
    for kind, key in INTERVAL_TARGETS.items():
        pooled = _intervals(kfold + shapes, gpu_out, key, intervals[kind].fitted)
        host_bound = _intervals([p for p in kfold + shapes if host(p)],
                                [p for p in gpu_out if host(p)], key, None)
        if host_bound is None:  # too few host-bound points: one width for every config
            intervals[kind] = pooled
            continue
        compute = _intervals([p for p in kfold + shapes if not host(p)],
                             [p for p in gpu_out if not host(p)], key, pooled.fitted)
        intervals[kind] = replace(  # the quantized runs' bounds stay pooled
            compute, quantized=pooled.quantized, n_quantized=pooled.n_quantized,
            host_bound=replace(host_bound, quantized=None, n_quantized=0))
    models.recalibrate(intervals=intervals)
    metrics = fold_metrics([p for p in kfold if not quantized(p)])
    models.calibration = {"latency_mape": metrics["total_s"]["mape"],
                          "memory_mape": metrics["allocated_memory"]["mape"],
                          "nvml_memory_mape": metrics["peak_memory"]["mape"]} if kfold else {}


def _intervals(fitted_points: list[dict], gpu_out: list[dict], key: str,
               default) -> Intervals | None:
    """Bounds from out-of-fold points: the compute precisions' fitted ones, the quantized
    precisions' own, the transferred ones. None when too few fitted points and no default
    (`default` is taken when they are too few)."""
    fitted = [p["log_ratio"][key] for p in fitted_points if not quantized(p)]
    own = [p["log_ratio"][key] for p in fitted_points if quantized(p)]
    transferred = [p["log_ratio"][key] for p in gpu_out]
    bounds = conformal_bounds(fitted, default)
    if bounds is None:
        return None
    return Intervals(fitted=bounds, transferred=conformal_bounds(transferred, None),
                     n_fitted=len(fitted), n_transferred=len(transferred),
                     quantized=conformal_bounds(own, None), n_quantized=len(own))
