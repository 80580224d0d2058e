"""How well the models predict measurements they did not see.

Three ways to hold data out: `kfold` (random folds of distinct configs), `shape_out` (each
height x width held out in turn, on every GPU and setting) and `gpu_out` (fit on all other GPUs,
predict this one through its catalog specs). Each held-out prediction goes through
`Models.predict_many`, intervals included, so the figures describe what users get.
"""
from __future__ import annotations

import math

import numpy as np

from advisor.features import GpuSpec, record_config, shape_label
from advisor.models import INTERVAL_COVERAGE, setting_key

SPLITS = {
    "kfold": "5-fold cross-validation over distinct configs (repeats of a config stay together)",
    "shape_out": "leave one shape (height x width) out: unseen resolutions and aspect ratios",
    "gpu_out": "leave one GPU out: fit the other GPUs, predict this one from its catalog specs",
}
TARGETS = {  # name -> (measured from results, predicted from a prediction), both in s or GB
    "total_s": (lambda r: r["total_s"], lambda p: p["latency_s"]["total"]),
    "denoise_step_s": (lambda r: r["denoise_step_s"], lambda p: p["denoise_step_s"]),
    "peak_memory": (lambda r: r["nvml_peak_used_mb"] * 2**20 / 1e9, lambda p: p["peak_memory_gb"]),
    "allocated_memory": (lambda r: r["peak_allocated_mb"] * 2**20 / 1e9,
                         lambda p: p["torch_peak_allocated_gb"]),
}
# Memory targets scored against the tolerance: torch's peak allocated memory (what decides
# whether a config fits: it is the same on every GPU of a software stack) and, reported beside
# it, NVML's used memory (the caching allocator grows it into whatever memory is free).
MEMORY_TARGETS = ("allocated_memory", "peak_memory")
# Issue 4's targets, for the report's verdicts.
GOALS = {
    "latency_mape_shape_out_max_pct": 5.0,
    "latency_mape_gpu_out_max_pct": 8.0,
    "memory_tolerance": "torch peak allocated within 3% or 256 MB at every held-out point",
    "coverage_pct": [85.0, 95.0],
}
MEMORY_TOLERANCE = (0.03, 256 * 2**20 / 1e9)  # relative, absolute GB
DEFAULT_FOLDS = 5
SEED = 0


def _folds(records: list[dict], split: str, folds: int) -> list[tuple[str, list[int]]]:
    """(label, held-out indices) per fold."""
    if split == "kfold":
        keys = sorted({_identity(r) for r in records})
        order = np.random.default_rng(SEED).permutation(len(keys))
        fold_of = {keys[i]: n % folds for n, i in enumerate(order)}
        return [(f"fold {k + 1}", [i for i, r in enumerate(records)
                                   if fold_of[_identity(r)] == k]) for k in range(folds)]
    if split == "shape_out":
        label = lambda r: shape_label(r["config"]["height"], r["config"]["width"])
    elif split == "gpu_out":
        label = lambda r: r["gpu"]["catalog_id"]
    else:
        raise ValueError(f"unknown split {split!r}")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(label(r), []).append(i)
    return sorted(groups.items())


def _identity(record: dict) -> str:
    from advisor.records import config_key

    return record["gpu"]["catalog_id"] + config_key(record["config"])


def cross_predict(records: list[dict], specs: dict[str, GpuSpec], split: str,
                  folds: int = DEFAULT_FOLDS, calibrate: bool = False) -> list[dict]:
    """Out-of-fold predictions of the ok records under `split`. `records` may include oom
    records: they stay in training (OOM boundaries) and are never scored. `calibrate` gives each
    fold's model its own calibrated intervals (for coverage); without it, intervals are
    placeholders (inside the calibration itself)."""
    from advisor.errors import AdvisorError
    from advisor.fit import fit_models

    out = []
    for label, held in _folds(records, split, folds):
        held_set = set(held)
        train = [r for i, r in enumerate(records) if i not in held_set]
        test = [records[i] for i in held if records[i]["status"] == "ok"]
        if not test or not any(r["status"] == "ok" for r in train):
            continue
        try:
            models = fit_models(train, specs, calibrate=calibrate)
        except AdvisorError:  # nothing usable left to fit on
            continue
        configs = [{"gpu_id": r["gpu"]["catalog_id"], **record_config(r)} for r in test]
        trained = {_setting(r) for r in train if r["status"] == "ok"}
        for record, pred in zip(test, models.predict_many(configs)):
            scored = _scored(record, pred, split, label, models.probed)
            scored["setting_probed"] = _setting(record) in trained
            out.append(scored)
    return out


def _setting(record: dict) -> tuple:
    return setting_key({"gpu": record["gpu"]["catalog_id"], **record_config(record)})


def _scored(record: dict, pred: dict, split: str, fold: str, probed: dict) -> dict:
    measured = {k: f(record["results"]) for k, (f, _) in TARGETS.items()}
    predicted = {k: g(pred) for k, (_, g) in TARGETS.items()}
    lat_lo, lat_hi = (v / pred["latency_s"]["total"] for v in pred["latency_interval_s"])
    intervals = {
        "total_s": pred["latency_interval_s"],
        # The step shares the total's relative interval (it dominates the total).
        "denoise_step_s": [predicted["denoise_step_s"] * lat_lo,
                           predicted["denoise_step_s"] * lat_hi],
        "peak_memory": pred["memory_interval_gb"],
        "allocated_memory": pred["torch_allocated_interval_gb"],
    }
    return {
        "record": record.get("_source"), "gpu": record["gpu"]["catalog_id"], "split": split,
        "fold": fold, "config": record["config"], "source": pred["source"],
        "trained_on": sorted(probed),
        "measured": measured, "predicted": predicted, "interval": intervals,
        "log_ratio": {k: math.log(measured[k] / predicted[k]) for k in TARGETS},
    }


def conformal_bounds(log_ratios: list[float], default):
    """Split-conformal (lo, hi) at INTERVAL_COVERAGE from residuals log(measured/predicted):
    the finite-sample-corrected quantiles; `default` when there are fewer than two."""
    r = np.sort(np.asarray(log_ratios, dtype=float))
    n = len(r)
    if n < 2:
        return default
    alpha = 1 - INTERVAL_COVERAGE
    k_lo = max(math.floor((n + 1) * alpha / 2), 1)
    k_hi = min(math.ceil((n + 1) * (1 - alpha / 2)), n)
    return float(min(r[k_lo - 1], 0.0)), float(max(r[k_hi - 1], 0.0))


def fold_metrics(preds: list[dict]) -> dict:
    """Per target: MAPE, median and max absolute % error, interval coverage %, n."""
    out = {}
    for key in TARGETS:
        if not preds:
            out[key] = {"mape": None, "median_ape": None, "max_ape": None, "coverage": None,
                        "n": 0}
            continue
        meas = np.array([p["measured"][key] for p in preds])
        pred = np.array([p["predicted"][key] for p in preds])
        lo = np.array([p["interval"][key][0] for p in preds])
        hi = np.array([p["interval"][key][1] for p in preds])
        ape = 100 * np.abs(pred - meas) / meas
        out[key] = {"mape": float(ape.mean()), "median_ape": float(np.median(ape)),
                    "max_ape": float(ape.max()),
                    "coverage": float(100 * np.mean((meas >= lo) & (meas <= hi))),
                    "n": len(preds)}
        if key in MEMORY_TARGETS:
            rel, absolute = MEMORY_TOLERANCE
            ok = np.abs(pred - meas) <= np.maximum(rel * meas, absolute)
            out[key]["within_tolerance_pct"] = float(100 * ok.mean())
    return out


def validation_report(records: list[dict], specs: dict[str, GpuSpec],
                      problems: list[str] = ()) -> dict:
    """The `advisor validate` report: headline numbers, per-split metrics, notes, and a
    plot-ready residual table."""
    from advisor.fit import usable

    _, records, skipped = usable(records, specs)
    problems = list(dict.fromkeys([*problems, *skipped]))
    ok = [r for r in records if r["status"] == "ok"]
    gpus = sorted({r["gpu"]["catalog_id"] for r in ok if r["gpu"]["catalog_id"] in specs})
    report = {"latency_mape": {}, "memory_mape": {}, "nvml_memory_mape": {}, "coverage": {},
              "metrics": {}, "splits": {}, "residuals": []}
    for split, description in SPLITS.items():
        note = None
        if split == "gpu_out" and len(gpus) < 2:
            preds = []
            note = (f"only one GPU has measurements ({', '.join(gpus) or 'none'}): "
                    "leave-one-GPU-out needs two, so transfer accuracy is not measured")
        else:
            preds = cross_predict(records, specs, split, calibrate=True)
        metrics = fold_metrics(preds)
        if split == "gpu_out" and preds:
            metrics["by_gpu"] = {}
            for gpu in gpus:
                held = [p for p in preds if p["gpu"] == gpu]
                if held:
                    direction = f"{', '.join(held[0]['trained_on'])} -> {gpu}"
                    metrics["by_gpu"][direction] = fold_metrics(held)["total_s"]["mape"]
        if split == "shape_out":
            # A setting probed at one shape only has nothing left to extrapolate from when that
            # shape is held out: those points test an unprobed setting, not an unseen shape.
            probed = [p for p in preds if p["setting_probed"]]
            metrics["probed_settings"] = {
                "total_s": fold_metrics(probed)["total_s"],
                "excluded": sorted({f"{p['gpu']} {config_label(p['config'])}"
                                    for p in preds if not p["setting_probed"]})}
        report["metrics"][split] = metrics
        report["latency_mape"][split] = metrics["total_s"]["mape"]
        report["memory_mape"][split] = metrics["allocated_memory"]["mape"]
        report["nvml_memory_mape"][split] = metrics["peak_memory"]["mape"]
        report["coverage"][split] = metrics["total_s"]["coverage"]
        report["splits"][split] = {"description": description, "n": len(preds), "note": note}
        report["residuals"] += _residual_rows(preds)
    report["data"] = {
        "records": len(records), "ok": len(ok),
        "oom": sum(r["status"] == "oom" for r in records),
        "gpus": {g: sum(r["gpu"]["catalog_id"] == g for r in ok) for g in gpus},
        "weights": sorted({r["weights"] for r in records}),
        "problems": list(problems),
    }
    report["goals"] = GOALS
    report["verdicts"] = _verdicts(report)
    return report


def config_label(c: dict) -> str:
    """A record config in a few words, e.g. "1024x768 b4 bf16 flash compile"."""
    parts = [shape_label(c["height"], c["width"]), f"b{c['batch']}", c["precision"],
             c["attention"]]
    parts += ["compile"] if c["compile"] else []
    parts += [f"offload={c['offload']}"] if c["offload"] != "none" else []
    parts += [f"cfg={c['guidance_scale']:g}"] if c["guidance_scale"] > 0 else []
    parts += [f"cap={c['caption_tokens']}"] if c["caption_tokens"] != 64 else []
    parts += [f"steps={c['steps']}"] if c["steps"] != 9 else []
    return " ".join(parts)


def _residual_rows(preds: list[dict]) -> list[dict]:
    """One row per held-out point and target: gpu, config, measured, predicted, split."""
    rows = []
    for p in preds:
        for target in TARGETS:
            measured, predicted = p["measured"][target], p["predicted"][target]
            rows.append({
                "gpu": p["gpu"], "config": config_label(p["config"]), "target": target,
                "split": p["split"], "fold": p["fold"], "record": p["record"],
                "source": p["source"], "setting_probed": p["setting_probed"],
                "measured": measured, "predicted": predicted,
                "interval": list(p["interval"][target]),
                "error_pct": 100 * (predicted - measured) / measured,
            })
    return rows


def _verdicts(report: dict) -> dict:
    """Each goal of issue 4 against the figures: true, false, or null (not measurable)."""
    shape = report["latency_mape"]["shape_out"]
    shape_probed = (report["metrics"]["shape_out"].get("probed_settings") or {}).get(
        "total_s", {}).get("mape")
    gpu = report["latency_mape"]["gpu_out"]
    memory = [report["metrics"][s]["allocated_memory"].get("within_tolerance_pct")
              for s in ("kfold", "shape_out")]
    lo, hi = GOALS["coverage_pct"]

    def at_most(mape, goal: str):
        return None if mape is None else mape <= GOALS[goal]

    verdicts = {
        "latency_shape_out": at_most(shape, "latency_mape_shape_out_max_pct"),
        "latency_shape_out_probed_settings": at_most(shape_probed,
                                                     "latency_mape_shape_out_max_pct"),
        "latency_gpu_out": at_most(gpu, "latency_mape_gpu_out_max_pct"),
        "memory_tolerance": None if None in memory else min(memory) == 100.0,
    }
    for split, value in report["coverage"].items():
        verdicts[f"coverage_{split}"] = None if value is None else lo <= value <= hi
    return verdicts


def format_table(report: dict) -> str:
    """The report as a plain-text table."""
    names = {"total_s": "latency total", "denoise_step_s": "denoise step",
             "allocated_memory": "memory (torch alloc)", "peak_memory": "memory (NVML used)"}
    lines = [f"{'split':<10} {'target':<20} {'n':>4} {'MAPE%':>7} {'median%':>8} {'max%':>7} "
             f"{'cover%':>7}"]
    for split in SPLITS:
        for target, name in names.items():
            m = report["metrics"][split][target]
            cells = [_fmt(m[k]) for k in ("mape", "median_ape", "max_ape", "coverage")]
            lines.append(f"{split:<10} {name:<20} {m['n']:>4} {cells[0]:>7} {cells[1]:>8} "
                         f"{cells[2]:>7} {cells[3]:>7}")
    lines.append("")
    for split, info in report["splits"].items():
        lines.append(f"{split}: {info['description']}" + (f" -- {info['note']}"
                                                         if info["note"] else ""))
    by_gpu = report["metrics"]["gpu_out"].get("by_gpu") or {}
    lines += [f"  gpu_out {direction}: latency MAPE {_fmt(v)}%" for direction, v in by_gpu.items()]
    scoped = report["metrics"]["shape_out"].get("probed_settings")
    if scoped and scoped["total_s"]["n"]:
        m = scoped["total_s"]
        lines.append(f"  shape_out, settings also probed at another shape ({m['n']} points): "
                     f"latency MAPE {_fmt(m['mape'])}%, coverage {_fmt(m['coverage'])}%; "
                     f"{len(scoped['excluded'])} points of settings probed at the held-out shape "
                     "only left out (metrics.shape_out.probed_settings.excluded)")
    for split in ("kfold", "shape_out", "gpu_out"):
        tol = [report["metrics"][split][t].get("within_tolerance_pct") for t in MEMORY_TARGETS]
        if None not in tol:
            lines.append(f"memory within 3% or 256 MB ({split}): torch allocated {tol[0]:.1f}%, "
                         f"NVML used {tol[1]:.1f}% of points")
    d = report["data"]
    lines.append(f"data: {d['ok']} ok + {d['oom']} oom records on "
                 f"{', '.join(f'{g} ({n})' for g, n in d['gpus'].items()) or 'no GPU'}; "
                 f"weights: {', '.join(d['weights'])}; {len(d['problems'])} problem(s)")
    lines.append("verdicts vs issue 4 goals: " + ", ".join(
        f"{k} {'ok' if v else 'MISSED' if v is False else 'n/a'}"
        for k, v in report["verdicts"].items()))
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"
