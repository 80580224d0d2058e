"""Fit the latency and memory models on measurement records: `fit_models`, no calibration.

The fitted `Models` carry placeholder interval widths; advisor.calibration sets them from
cross-validation (which refits through this module), and advisor.cache keeps the result.
"""
from __future__ import annotations

import statistics
from dataclasses import replace

import numpy as np

from advisor.contract import Config
from advisor.coverage import Probed
from advisor.errors import AdvisorError
from advisor.features import (
    LATENCY_STAGES, MEMORY_STAGES, GpuSpec, make_row, match_key, memory_key, refusal,
    setting_key,
)
from advisor.intervals import machine_bands
from advisor.memory_rule import MeasuredRun
from advisor.models import Measured, Models
from advisor.predictors import MinCapPredictor
from advisor.transfer import fit_class_transfer


# ---------------------------------------------------------------------------------------------
# Training data


def usable(records: list[dict], specs: dict[str, GpuSpec]):
    """(rows, records, problems, kept): the ok and oom records the models can use (the real
    architecture on a catalog GPU, a modelled config, memory figures for ok ones), their query
    rows, why each other record was skipped, and the valid records of a setting the advisor
    does not offer, kept in the data deliberately (not a problem: listed where records are)."""
    rows, used, problems, kept = [], [], [], []
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
            config = Config.from_record(record["config"])
            reason = refusal(specs[gpu_id], config)
            if reason:  # a valid record of a setting the advisor does not offer
                kept.append(f"{where}: {reason}; kept for the record, not fitted")
                continue
            rows.append(make_row(specs[gpu_id], config,
                                 capacity_mib=record["gpu"].get("memory_mb")))
        except AdvisorError as exc:
            problems.append(f"{where}: {exc}; skipped")
            continue
        used.append(record)
    return rows, used, problems, kept


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


def fit_estimators(rows: list[dict], records: list[dict], latency=None, memory=None):
    """(latency, memory) scikit-learn estimators fitted on ok records; `latency` / `memory`
    are unfitted estimators to use (default: LatencyRegressor(), MemoryRegressor())."""
    from advisor.estimators import LatencyRegressor, MemoryRegressor

    y = targets(records)
    latency = (latency or LatencyRegressor()).fit(rows, y["latency"])
    memory = (memory or MemoryRegressor()).fit(rows, y["memory"], stage_peaks=y["stage_peaks"],
                                               reserved=y["reserved"])
    return latency, memory


def fit_models(records: list[dict], specs: dict[str, GpuSpec], problems: list[str] = (),
               model_version: str = "uncached", estimators: tuple = (None, None),
               capped: list[dict] = ()) -> Models:
    """Models from valid records, with placeholder intervals (advisor.calibration sets them).
    `estimators`: unfitted (latency, memory) estimators to fit, None for the defaults.
    `capped`: records run under a memory cap (data/measurements/capped/), whose minimum-cap
    searches set the minimum-cap model.
    With op-class profiles in the records, GPUs never probed are predicted class by class."""
    all_rows, records, skipped, kept = usable(records, specs)
    problems = list(problems) + skipped
    ok = [i for i, r in enumerate(records) if r["status"] == "ok"]
    rows, ok_records = [all_rows[i] for i in ok], [records[i] for i in ok]
    if not ok:
        raise AdvisorError("no usable measurement records (status ok, GPU in the catalog)"
                           + (f"; problems: {'; '.join(problems[:5])}" if problems else ""))
    latency, memory = fit_estimators(rows, ok_records, *estimators)
    outcomes: dict[str, list] = {}
    for record in records:
        outcomes.setdefault(record["gpu"]["catalog_id"], []).append(MeasuredRun.of_record(record))
    return Models(
        model_version=model_version, specs=specs, latency=latency.predictor_,
        transfer=fit_class_transfer(rows, ok_records, latency.predictor_, specs),
        memory=memory.predictor_, min_cap=fit_min_cap(memory.predictor_, capped, specs),
        capped=list(capped),
        estimator_params={"latency": latency.get_params(), "memory": memory.get_params()},
        probed=_probed_capacity(ok_records), measured=_measured(rows, ok_records),
        outcomes=outcomes, power=_power(ok_records), shapes=_shapes(rows),
        reach=Probed.of(ok_records), machine_bands=machine_bands(ok_records),
        records=records, problems=problems, kept=kept,
    )


def min_cap_rows(capped: list[dict], specs: dict[str, GpuSpec]) -> tuple[list, list]:
    """(rows, records) of the minimum-cap searches the memory model can answer for (a modelled
    setting, the whole VAE)."""
    rows, used = [], []
    for record in capped:
        config = Config.from_record(record["config"])
        if record["status"] != "ok" or (record["results"] or {}).get("min_cap_gib") is None \
                or config.vae != "full" or record["gpu"].get("catalog_id") not in specs:
            continue
        try:  # the uncapped config: what the minimum-cap model answers for
            rows.append(make_row(specs[record["gpu"]["catalog_id"]],
                                 replace(config, memory_cap_gib=None)))
        except AdvisorError:  # a setting the models do not predict (group offload)
            continue
        used.append(record)
    return rows, used


def fit_min_cap(memory, capped: list[dict], specs: dict[str, GpuSpec]) -> MinCapPredictor | None:
    """Offsets of the measured minimum caps above the predicted uncapped peak allocated, per
    family (MinCapPredictor.fit), and the measured caps by config (the largest of repeated
    searches); None without searches."""
    rows, used = min_cap_rows(capped, specs)
    if not rows:
        return None
    caps = np.array([r["results"]["min_cap_gib"] * 1024 for r in used])
    measured = {}
    for row, cap, record in zip(rows, caps, used):
        key = memory_key(row)
        if cap >= measured.get(key, (0.0,))[0]:
            measured[key] = (float(cap), record.get("_source", "record"))
    return MinCapPredictor.fit(caps, memory.predict(rows)["allocated"], rows, measured)


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
        steps = recs[0]["config"]["steps"]
        med = lambda k: _median([x[k] for x in res])
        total = med("total_s")
        spreads = [x.get("spread", {}).get("total_s") for x in res]
        spreads = [s for s in spreads if isinstance(s, list) and len(s) == 2]
        out[key] = Measured(
            stages_s={"text_encode": med("text_encode_s"), "denoise": med("denoise_s"),
                      "vae_decode": med("vae_decode_s"),
                      "other": _median([stage_times(x, steps)[4] for x in res]),
                      "total": total},
            denoise_step_s=med("denoise_step_s"),
            interval_s=(min([total] + [s[0] for s in spreads]),
                        max([total] + [s[1] for s in spreads])),
            allocated_gb=med("peak_allocated_mb") * 2**20 / 1e9,
            nvml_gb=med("nvml_peak_used_mb") * 2**20 / 1e9,
            power_w=_median_or_none([x.get("power_w") for x in res]),
            energy_j_per_image=_median_or_none([x.get("energy_j_per_image") for x in res]),
            where="record " + ", ".join(r.get("_source", "?") for r in recs))
    return out


def _median(values: list) -> float:
    """np.median's figure for a few numbers, without its overhead (a fit takes thousands)."""
    return float(statistics.median(values))


def _median_or_none(values: list) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float))]
    return _median(numbers) if numbers else None
