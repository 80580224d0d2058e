"""Fit the latency and memory models on the measurements, calibrate intervals, cache the result.

`load_models()` is the entry point: it hashes the measurement files, the catalog and this code,
and either unpickles our own cache file (numpy-only objects, so no scikit-learn import) or fits
and writes it. Pickle is used only for these cache files, never for user-supplied data.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

from advisor import ARCH_DIR, CATALOG_PATH, MEASUREMENTS_DIR
from advisor.errors import AdvisorError
from advisor.features import (
    LATENCY_STAGES, MEMORY_STAGES, GpuSpec, make_row, record_config, shape_label,
)
from advisor.fileio import sha256_file, write_atomic
from advisor.models import Intervals, Models, match_key, oom_size, setting_key

CODE_VERSION = "fit-1"
# Source files whose change must invalidate a cached fit (besides CODE_VERSION).
CODE_FILES = ("features.py", "grouped.py", "predictors.py", "estimators.py", "models.py",
              "fit.py", "validation.py", "workload.py", "records.py")
CACHE_ENV = "ZIMAGE_ADVISOR_CACHE"
CACHE_KEEP = 8  # cache files kept per folder (one per data/catalog/code combination)
CALIBRATION_FOLDS = 5
# Interval kind -> the validation target whose out-of-fold residuals set its width.
INTERVAL_TARGETS = {"latency": "total_s", "memory": "peak_memory",
                    "allocated": "allocated_memory"}


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "zimage-advisor")


# ---------------------------------------------------------------------------------------------
# Training data


def usable(records: list[dict], specs: dict[str, GpuSpec]):
    """(rows, records, problems): the ok and oom records the models can use (the real
    architecture on a catalog GPU, a modelled config, memory figures for ok ones), their query
    rows, and why each other record was skipped."""
    rows, used, problems = [], [], []
    for record in records:
        if record["status"] not in ("ok", "oom"):
            continue
        gpu_id = record["gpu"].get("catalog_id")
        where = record.get("_source", "record")
        if record.get("architecture", "z-image-turbo") != "z-image-turbo":
            problems.append(f"{where}: architecture {record['architecture']!r} is not a sizing "
                            "figure; skipped")
            continue
        if gpu_id not in specs:
            problems.append(f"{where}: gpu.catalog_id {gpu_id!r} is not in the catalog; skipped")
            continue
        missing = [k for k in ("peak_allocated_mb", "nvml_peak_used_mb")
                   if record["status"] == "ok" and record["results"][k] is None]
        if missing:
            problems.append(f"{where}: results.{missing[0]} is null (no memory figures); "
                            "skipped")
            continue
        try:
            rows.append(make_row(specs[gpu_id], **record_config(record),
                                 capacity_mib=record["gpu"].get("memory_mb")))
        except AdvisorError as exc:
            problems.append(f"{where}: {exc}; skipped")
            continue
        used.append(record)
    return rows, used, problems


def stage_times(results: dict, steps: int) -> list[float]:
    """A record's seconds in LATENCY_STAGES order. The first step's extra time and the rest of
    the call come from the composition (denoise_s = first step + (steps - 1) x step, total_s =
    stages + other), so records that lack denoise_first_step_s / other_s read as zero."""
    extra = results["denoise_s"] - steps * results["denoise_step_s"]
    other = (results["total_s"] - results["text_encode_s"] - results["denoise_s"]
             - results["vae_decode_s"])
    return [results["text_encode_s"], results["denoise_step_s"], extra,
            results["vae_decode_s"], other]


def targets(records: list[dict]) -> dict[str, np.ndarray]:
    """`latency` (n, 5) s, `memory` (n, 2) MiB [torch allocated, NVML used], `stage_peaks`
    (n, 3) and `reserved` (n,) MiB, NaN where a record lacks them."""
    latency = [stage_times(r["results"], r["config"]["steps"]) for r in records]
    memory = [[r["results"]["peak_allocated_mb"], r["results"]["nvml_peak_used_mb"]]
              for r in records]
    stage_peaks = [[_stage_peak(r, s) for s in MEMORY_STAGES] for r in records]
    reserved = [r["results"].get("peak_reserved_mb") for r in records]
    return {"latency": np.array(latency, dtype=float).reshape(-1, len(LATENCY_STAGES)),
            "memory": np.array(memory, dtype=float).reshape(-1, 2),
            "stage_peaks": np.array(stage_peaks, dtype=float).reshape(-1, len(MEMORY_STAGES)),
            "reserved": np.array([v if isinstance(v, (int, float)) else np.nan
                                  for v in reserved], dtype=float)}


def _stage_peak(record: dict, stage: str) -> float:
    value = ((record["results"].get("stage_memory") or {}).get(stage) or {}).get(
        "peak_allocated_mb")
    return float(value) if isinstance(value, (int, float)) and value > 0 else np.nan


# ---------------------------------------------------------------------------------------------
# Fitting


def fit_predictors(rows: list[dict], records: list[dict]):
    """(LatencyPredictor, MemoryPredictor) fitted on ok records."""
    from advisor.estimators import LatencyRegressor, MemoryRegressor

    y = targets(records)
    lat = LatencyRegressor().fit(rows, y["latency"])
    mem = MemoryRegressor().fit(rows, y["memory"], stage_peaks=y["stage_peaks"],
                                reserved=y["reserved"])
    return lat.predictor_, mem.predictor_


def fit_models(records: list[dict], specs: dict[str, GpuSpec], problems: list[str] = (),
               model_version: str = CODE_VERSION, calibrate: bool = True) -> Models:
    """Models from valid records. `calibrate` runs the internal cross-validation that sets the
    interval widths (off inside the folds of that cross-validation: placeholders there)."""
    all_rows, records, skipped = usable(records, specs)
    problems = list(problems) + skipped
    ok = [i for i, r in enumerate(records) if r["status"] == "ok"]
    rows, ok_records = [all_rows[i] for i in ok], [records[i] for i in ok]
    if not ok:
        raise AdvisorError("no usable measurement records (status ok, GPU in the catalog)"
                           + (f"; problems: {'; '.join(problems[:5])}" if problems else ""))
    latency, memory = fit_predictors(rows, ok_records)
    placeholder = Intervals((-0.1, 0.1), None)
    models = Models(
        model_version=model_version, specs=specs, latency=latency, memory=memory,
        intervals={kind: placeholder for kind in INTERVAL_TARGETS},
        probed=_probed_capacity(ok_records), measured=_measured(rows, ok_records),
        power=_power(ok_records), ooms=_ooms(all_rows, records), calibration={},
        shapes=_shapes(rows),
        records=records, problems=problems,
    )
    if calibrate:
        _calibrate(models, records, specs)
    return models


def _shapes(rows: list[dict]) -> dict:
    """The shapes measured per GPU and setting."""
    out: dict[tuple, set] = {}
    for row in rows:
        out.setdefault(setting_key(row), set()).add((row["height"], row["width"]))
    return out


def _probed_capacity(records: list[dict]) -> dict[str, float]:
    """GB (decimal) of NVML total memory per probed GPU: the real capacity, not the marketed."""
    totals: dict[str, list[float]] = {}
    for r in records:
        totals.setdefault(r["gpu"]["catalog_id"], []).append(r["gpu"]["memory_mb"])
    return {gpu: float(np.median(mb)) * 2**20 / 1e9 for gpu, mb in totals.items()}


def _power(records: list[dict]) -> dict[str, tuple[float, int]]:
    """(max measured denoise power W, records) per probed GPU: a conservative board power for
    configs of that GPU that were not measured themselves."""
    watts: dict[str, list[float]] = {}
    for r in records:
        if isinstance(r["results"].get("power_w"), (int, float)):
            watts.setdefault(r["gpu"]["catalog_id"], []).append(r["results"]["power_w"])
    return {gpu: (float(max(w)), len(w)) for gpu, w in watts.items()}


def _measured(rows: list[dict], records: list[dict]) -> dict:
    """Measured figures per exact config (median over repeated records of it)."""
    groups: dict[tuple, list[dict]] = {}
    for row, record in zip(rows, records):
        groups.setdefault(match_key(row), []).append(record)
    out = {}
    for key, recs in groups.items():
        res = [r["results"] for r in recs]
        key_steps = recs[0]["config"]["steps"]
        med = lambda k: float(np.median([x[k] for x in res]))
        total = med("total_s")
        spreads = [x.get("spread", {}).get("total_s") for x in res]
        spreads = [s for s in spreads if isinstance(s, list) and len(s) == 2]
        lo = min([total] + [s[0] for s in spreads])
        hi = max([total] + [s[1] for s in spreads])
        peak_gb = med("nvml_peak_used_mb") * 2**20 / 1e9
        out[key] = {
            "latency_s": {"text_encode": med("text_encode_s"), "denoise": med("denoise_s"),
                          "vae_decode": med("vae_decode_s"),
                          "other": float(np.median([stage_times(x, key_steps)[4] for x in res])),
                          "total": total},
            "denoise_step_s": med("denoise_step_s"),
            "latency_interval_s": [lo, hi],
            "peak_memory_gb": peak_gb,
            "torch_peak_allocated_gb": med("peak_allocated_mb") * 2**20 / 1e9,
            "torch_allocated_interval_gb": [med("peak_allocated_mb") * 2**20 / 1e9] * 2,
            "power_w": _median_or_none([x.get("power_w") for x in res]),
            "energy_j_per_image": _median_or_none([x.get("energy_j_per_image") for x in res]),
            "memory_interval_gb": [peak_gb, peak_gb],
            "source": "measured",
            "source_detail": "record " + ", ".join(r.get("_source", "?") for r in recs),
        }
    return out


def _median_or_none(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return float(np.median(numbers)) if numbers else None


def _ooms(rows: list[dict], records: list[dict]) -> dict:
    """Measured OOM sizes per GPU and setting, smallest first, with where they were measured."""
    out: dict[tuple, list] = {}
    for row, record in zip(rows, records):
        if record["status"] != "oom":
            continue
        where = (f"{shape_label(row['height'], row['width'])} batch {row['batch']}"
                 f"{' with CFG' if row['cfg'] else ''} ({record.get('_source', 'record')})")
        out.setdefault(setting_key(row), []).append((oom_size(row), where))
    for entries in out.values():
        entries.sort()
    return out


def _calibrate(models: Models, records: list[dict], specs: dict[str, GpuSpec]) -> None:
    """Interval widths from out-of-fold residuals. Fitted predictions (a probed GPU): K-fold
    residuals pooled with leave-one-shape-out residuals of settings still probed at another
    shape, since a fitted prediction is usually of a shape that was not measured. Transferred
    predictions: leave-one-GPU-out residuals (when more than one GPU was probed)."""
    from advisor.validation import conformal_bounds, cross_predict, fold_metrics

    kfold = cross_predict(records, specs, "kfold", folds=CALIBRATION_FOLDS)
    shapes = [p for p in cross_predict(records, specs, "shape_out") if p["setting_probed"]]
    gpu_out = cross_predict(records, specs, "gpu_out") if len(models.probed) > 1 else []
    for kind, key in INTERVAL_TARGETS.items():
        fitted = [p["log_ratio"][key] for p in kfold + shapes]
        transferred = [p["log_ratio"][key] for p in gpu_out]
        models.intervals[kind] = Intervals(
            fitted=conformal_bounds(fitted, models.intervals[kind].fitted),
            transferred=conformal_bounds(transferred, None),
            n_fitted=len(fitted), n_transferred=len(transferred))
    metrics = fold_metrics(kfold)
    models.calibration = {"latency_mape": metrics["total_s"]["mape"],
                          "memory_mape": metrics["allocated_memory"]["mape"],
                          "nvml_memory_mape": metrics["peak_memory"]["mape"]} if kfold else {}


# ---------------------------------------------------------------------------------------------
# Cache


def code_version() -> str:
    """CODE_VERSION plus a hash of the modelling code and the architecture configs."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(CODE_VERSION.encode())
    for name in CODE_FILES:
        h.update(name.encode() + (here / name).read_bytes())
    for path in sorted(Path(ARCH_DIR).rglob("*.json")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def cache_key(measurements_dir: Path, catalog_path: Path) -> str:
    h = hashlib.sha256(code_version().encode())
    h.update(sha256_file(catalog_path).encode())
    for path in sorted(measurements_dir.glob("*.jsonl")):
        h.update(path.name.encode() + sha256_file(path).encode())
    return h.hexdigest()


def save_cache(models: Models, path: str | Path) -> None:
    write_atomic(path, pickle.dumps(models, protocol=pickle.HIGHEST_PROTOCOL))


def _load_cache(path: Path, key: str) -> Models | None:
    try:
        models = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except Exception:  # a stale or damaged cache file is refitted, never trusted
        return None
    return models if isinstance(models, Models) and models.model_version.endswith(key[:12]) \
        else None


def _prune(cache_dir: Path) -> None:
    files = sorted(cache_dir.glob("models-*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in files[CACHE_KEEP:]:
        stale.unlink(missing_ok=True)


def load_models(measurements_dir: str | Path = MEASUREMENTS_DIR,
                catalog_path: str | Path = CATALOG_PATH, cache_dir: str | Path | None = None,
                refit: bool = False) -> Models:
    """Fitted models for the measurements and catalog, from the cache when nothing changed."""
    measurements_dir, catalog_path = Path(measurements_dir), Path(catalog_path)
    if not measurements_dir.is_dir():
        raise AdvisorError(f"--data {measurements_dir}: measurements folder not found")
    if not catalog_path.is_file():
        raise AdvisorError(f"--catalog {catalog_path}: catalog file not found")
    key = cache_key(measurements_dir, catalog_path)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"models-{key[:32]}.pkl"
    if not refit:
        models = _load_cache(path, key)
        if models is not None:
            models.cache_path = str(path)
            return models
    models = fit_from_files(measurements_dir, catalog_path,
                            model_version=f"{CODE_VERSION}:{key[:12]}")
    models.cache_path = str(path)
    try:
        save_cache(models, path)
        _prune(cache_dir)
    except OSError as exc:  # a read-only home must not stop predictions
        models.problems.append(f"{path}: model cache not written ({exc.strerror or exc})")
        models.cache_path = None
    return models


def fit_from_files(measurements_dir: Path, catalog_path: Path, model_version: str) -> Models:
    from advisor.catalog import load_catalog
    from advisor.records import load_measurements

    records, problems = load_measurements(measurements_dir)
    if not records:
        raise AdvisorError(f"{measurements_dir}: no usable measurement records (*.jsonl)"
                           + (f"; {len(problems)} invalid line(s), first: {problems[0]}"
                              if problems else ""))
    catalog = load_catalog(catalog_path)
    specs = {g.id: GpuSpec.from_catalog(g) for g in catalog.gpus}
    for record in records:  # records probed before the catalog knew the GPU: match by name
        gpu = record["gpu"]
        if gpu.get("catalog_id") not in specs:
            match = catalog.match_nvml(gpu["name"], gpu["memory_mb"] * 2**20 / 1e9)
            gpu["catalog_id"] = match.id if match else gpu.get("catalog_id")
    return fit_models(records, specs, problems, model_version=model_version)


def fit_summary(models: Models) -> dict:
    """What `advisor fit` prints: data used, calibration, intervals, fitted efficiencies."""
    ok = [r for r in models.records if r["status"] == "ok"]
    efficiency = {}
    for gpu in sorted(models.probed):
        pred = models.predict(gpu, 1024, 1024)
        row = make_row(models.specs[gpu], 1024, 1024)
        matmul = models.latency.efficiencies(row)["denoise_step"]["matmul"]
        efficiency[gpu] = {"denoise_step_s": pred["denoise_step_s"], "mfu": pred["mfu"],
                           "matmul_efficiency": 1 / matmul if matmul else None,
                           "source": pred["source"]}
    return {
        "model_version": models.model_version,
        "records_used": len(ok),
        "oom_records": sum(r["status"] == "oom" for r in models.records),
        "gpus": {g: sum(r["gpu"]["catalog_id"] == g for r in ok) for g in sorted(models.probed)},
        "calibration": models.calibration,
        "intervals": {kind: {"fitted": list(iv.fitted),
                             "transferred": list(iv.transferred) if iv.transferred else None,
                             "n_fitted": iv.n_fitted, "n_transferred": iv.n_transferred}
                      for kind, iv in models.intervals.items()},
        "efficiency_1024": efficiency,
        "problems": models.problems,
        "cache_path": models.cache_path,
    }
