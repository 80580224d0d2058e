"""How well the models predict measurements they did not see.

Four ways to hold data out: `kfold` (random folds of distinct configs), `shape_out` (each
height x width held out in turn, on every GPU and setting), `gpu_out` (fit on all other GPUs,
predict this one through its catalog specs) and `machine_out` (one machine of a GPU measured
on several, predicted from everything else: what a buyer's own machine gets). Each held-out
prediction goes through `Models.predict_many`, intervals included, so the figures describe what
users get.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from advisor.contract import QUANTIZATIONS, REGIMES, Config
from advisor.errors import AdvisorError
from advisor.features import GpuSpec, make_row, memory_key, setting_key
from advisor.fit import min_cap_rows, usable
from advisor.published_split import published_split
from advisor.predictors import MinCapPredictor, cap_family
from advisor.records import (
    CONFIG_OPTIONAL, SETTING_OPTIONAL, UNRECORDED_MACHINE, config_key, machine_medians,
    machine_of,
)

SPLITS = {
    "kfold": "5-fold cross-validation over distinct configs (repeats of a config stay together)",
    "shape_out": "leave one shape (height x width) out: unseen resolutions and aspect ratios",
    "gpu_out": "leave one GPU out: fit the other GPUs, predict this one from its catalog specs",
    "machine_out": "leave one machine out: for each GPU measured on several machines, fit "
                   "everything but one machine's records, predict that machine",
}
TARGETS = {  # name -> (measured from results, predicted from a Prediction), both in s or GB
    "total_s": (lambda r: r["total_s"], lambda p: p.latency.total_s),
    "denoise_step_s": (lambda r: r["denoise_step_s"], lambda p: p.latency.denoise_step_s),
    "peak_memory": (lambda r: r["nvml_peak_used_mb"] * 2**20 / 1e9, lambda p: p.memory.nvml_gb),
    "allocated_memory": (lambda r: r["peak_allocated_mb"] * 2**20 / 1e9,
                         lambda p: p.memory.allocated_gb),
}
# Memory targets scored against the tolerance: torch's peak allocated memory (what decides
# whether a config fits: it is the same on every GPU of a software stack) and, reported beside
# it, NVML's used memory (the caching allocator grows it into whatever memory is free).
MEMORY_TARGETS = ("allocated_memory", "peak_memory")
# The accuracy targets the report's verdicts check.
GOALS = {
    "latency_mape_shape_out_max_pct": 5.0,
    "latency_mape_gpu_out_max_pct": 8.0,
    "memory_tolerance": "torch peak allocated within 3% or 256 MB at every held-out point",
    "coverage_pct": [85.0, 95.0],
    "latency_mape_published_max_pct": 15.0,
    "published_inside_interval": "every trusted published point inside its 90% interval",
}
MEMORY_TOLERANCE = (0.03, 256 * 2**20 / 1e9)  # relative, absolute GB
DEFAULT_FOLDS = 5


def _folds(records: list[dict], split: str, folds: int) -> list[tuple[str, np.ndarray]]:
    """(label, held-out indices) per fold: GroupKFold over distinct configs (repeats of a config
    stay together), LeaveOneGroupOut over shapes or GPUs."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    if split == "kfold":
        groups = [r["gpu"]["catalog_id"] + config_key(r["config"]) for r in records]
        splitter = GroupKFold(n_splits=min(folds, len(set(groups))))
        return [(f"fold {k + 1}", held) for k, (_, held) in
                enumerate(splitter.split(records, groups=groups))]
    if split == "machine_out":
        machine = [(r["gpu"]["catalog_id"], machine_of(r) or UNRECORDED_MACHINE) for r in records]
        several = {g for g, _ in machine if len({m for x, m in machine if x == g}) > 1}
        held = {key: [] for key in sorted(set(machine)) if key[0] in several}
        for i, key in enumerate(machine):
            if key in held:
                held[key].append(i)
        return [(f"{gpu} {m}", np.array(ix)) for (gpu, m), ix in held.items()]
    if split == "shape_out":
        groups = [Config.from_record(r["config"]).shape_label() for r in records]
    elif split == "gpu_out":
        groups = [r["gpu"]["catalog_id"] for r in records]
    else:
        raise ValueError(f"unknown split {split!r}")
    if len(set(groups)) < 2:
        return []
    return [(groups[held[0]], held) for _, held in
            LeaveOneGroupOut().split(records, groups=groups)]


def cross_predict(records: list[dict], specs: dict[str, GpuSpec], split: str, fit,
                  folds: int = DEFAULT_FOLDS) -> list[dict]:
    """Out-of-fold predictions of the ok records under `split`, each fold's models made by
    `fit(train_records, specs)` (advisor.fit.fit_models: placeholder intervals; or
    advisor.calibration.fit_calibrated: calibrated intervals, for coverage). `records` may
    include oom records: they stay in training (OOM boundaries) and are never scored. Each
    point says whether its setting had training records on its GPU (`setting_probed`) and on
    any GPU (`setting_anywhere`), and its precision at its compile setting on any GPU
    (`precision_probed`)."""
    return [p for label, held in _folds(records, split, folds)
            for p in _fold_points(records, specs, split, fit, label, held)]


def _fold_points(records: list[dict], specs: dict[str, GpuSpec], split: str, fit, label: str,
                 held: np.ndarray) -> list[dict]:
    """One fold of `cross_predict`: its held-out points, scored (none when the fold leaves
    nothing to score or to fit on)."""
    held_set = set(held.tolist())
    train = [r for i, r in enumerate(records) if i not in held_set]
    test = [records[i] for i in held if records[i]["status"] == "ok"]
    if not test or not any(r["status"] == "ok" for r in train):
        return []
    try:
        models = fit(train, specs)
    except AdvisorError:  # nothing usable left to fit on
        return []
    queries = [(r["gpu"]["catalog_id"], Config.from_record(r["config"])) for r in test]
    trained = {_setting(r) for r in train if r["status"] == "ok"}
    precisions = {(key[1], key[3]) for key in trained}  # (precision, compile)
    anywhere = {key[1:] for key in trained}  # the settings, on whichever GPU
    out = []
    for record, (_, config), pred in zip(test, queries, models.predict_many(queries)):
        scored = _scored(record, pred, split, label, models.probed)
        setting = _setting(record)
        scored["setting_probed"] = setting in trained
        scored["setting_anywhere"] = setting[1:] in anywhere
        scored["precision_probed"] = (config.precision, config.compile) in precisions
        out.append(scored)
    return out


# What the fold workers of `_all_folds` read: set before they are forked, so that the records,
# specs and fit function reach them without being pickled.
_FORKED: tuple = ()


def _forked_fold(task: tuple) -> list[dict]:
    (records, specs, fit), (split, label, held) = _FORKED, task
    return _fold_points(records, specs, split, fit, label, held)


def _all_folds(records: list[dict], specs: dict[str, GpuSpec], splits: list[str], fit,
               workers: int):
    """(split, its points) for each of `splits` in turn, as cross_predict gives them; the
    folds of every split run in `workers` forked processes (the answer is the same: each fold
    is fitted and scored on its own), or here with 1 or where there is no fork."""
    import multiprocessing
    import threading

    tasks = [(split, label, held) for split in splits
             for label, held in _folds(records, split, DEFAULT_FOLDS)]
    global _FORKED
    # a fork copies the calling thread alone: another thread's lock would stay held in the child
    if workers > 1 and len(tasks) > 1 and threading.active_count() == 1 \
            and "fork" in multiprocessing.get_all_start_methods():
        _FORKED = (records, specs, fit)
        try:
            with multiprocessing.get_context("fork").Pool(min(workers, len(tasks))) as pool:
                yield from _by_split(splits, tasks, pool.imap(_forked_fold, tasks))
        finally:
            _FORKED = ()
    else:
        yield from _by_split(splits, tasks, (
            _fold_points(records, specs, split, fit, label, held)
            for split, label, held in tasks))


def _by_split(splits: list[str], tasks: list[tuple], points):
    """(split, points) for each of `splits`, from the points of each task (tasks are in the
    order of their splits; their points come in task order)."""
    results = iter(points)
    for split in splits:
        yield split, [p for task in tasks if task[0] == split for p in next(results)]


def regime_of(point: dict) -> str:
    """The regime (contract.REGIMES) of a held-out point's config."""
    return Config.from_record(point["config"]).regime()


def quantized(point: dict) -> bool:
    """Whether a held-out point is a run of a quantized precision (contract.QUANTIZATIONS)."""
    return point["config"]["precision"] in QUANTIZATIONS


def _setting(record: dict) -> tuple:
    c = Config.from_record(record["config"])
    return setting_key({"gpu": record["gpu"]["catalog_id"], **c.setting.as_dict()})


def _scored(record: dict, pred, split: str, fold: str, probed: dict) -> dict:
    measured = {k: f(record["results"]) for k, (f, _) in TARGETS.items()}
    predicted = {k: g(pred) for k, (_, g) in TARGETS.items()}
    lat_lo, lat_hi = (v / pred.latency.total_s for v in pred.latency.interval_s)
    intervals = {
        "total_s": list(pred.latency.interval_s),
        # The step shares the total's relative interval (it dominates the total).
        "denoise_step_s": [predicted["denoise_step_s"] * lat_lo,
                           predicted["denoise_step_s"] * lat_hi],
        "peak_memory": list(pred.memory.nvml_interval_gb),
        "allocated_memory": list(pred.memory.allocated_interval_gb),
    }
    return {
        "record": record.get("_source"), "gpu": record["gpu"]["catalog_id"], "split": split,
        "fold": fold, "config": record["config"], "source": pred.source,
        "trained_on": sorted(probed),
        "measured": measured, "predicted": predicted, "interval": intervals,
        "log_ratio": {k: math.log(measured[k] / predicted[k]) for k in TARGETS},
    }


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


def validation_report(records: list[dict], specs: dict[str, GpuSpec], fit,
                      problems: list[str] = (), published: list | None = None,
                      capped: list[dict] = (), progress=None, workers: int = 1) -> dict:
    """The `advisor validate` report: headline numbers, per-split metrics, notes, and a
    plot-ready residual table. `fit(records, specs)` makes each fold's models (calibrated
    ones, so that interval coverage is measured as users get it). `published`
    (advisor.published points) adds the `published` split: models fitted on every record,
    scored on third-party measurements they never saw. `capped` (records run under a memory
    cap) adds the `capped` split: the minimum-cap model left one search out at a time, and
    every measured (config, cap) outcome against the verdict. `progress(step, of, what)`, if
    given, is called before each split (a first validation takes a while). `workers` > 1
    fits the folds in that many forked processes where this process runs no other thread (the
    `advisor validate` command; a dashboard or test process computes here)."""
    _, records, skipped, _ = usable(records, specs)
    problems = list(dict.fromkeys([*problems, *skipped]))
    ok = [r for r in records if r["status"] == "ok"]
    gpus = sorted({r["gpu"]["catalog_id"] for r in ok if r["gpu"]["catalog_id"] in specs})
    report = {"latency_mape": {}, "memory_mape": {}, "nvml_memory_mape": {}, "coverage": {},
              "metrics": {}, "splits": {}, "residuals": []}
    held_quantized, held_all = {}, {}
    steps = len(SPLITS) + (published is not None or bool(capped))
    held_out = _all_folds(records, specs, [s for s in SPLITS if s != "gpu_out" or len(gpus) > 1],
                          fit, workers)
    for step, (split, description) in enumerate(SPLITS.items(), 1):
        if progress:
            progress(step, steps, split)
        note = None
        if split == "gpu_out" and len(gpus) < 2:
            preds = []
            note = (f"only one GPU has measurements ({', '.join(gpus) or 'none'}): "
                    "leave-one-GPU-out needs two, so transfer accuracy is not measured")
        else:
            preds = next(held_out)[1]
        report["residuals"] += _residual_rows(preds)
        held_all[split] = preds
        # The splits' figures are the compute precisions' (bf16, fp16, fp32, fp32-tf32), as
        # before quantized records existed; quantized points are scored apart (`quantized`).
        held_quantized[split] = [p for p in preds if quantized(p)]
        preds = [p for p in preds if not quantized(p)]
        metrics = fold_metrics(preds)
        if split == "gpu_out" and preds:
            metrics["by_gpu"] = {}
            for gpu in gpus:
                held = [p for p in preds if p["gpu"] == gpu]
                if held:
                    direction = f"{', '.join(held[0]['trained_on'])} -> {gpu}"
                    metrics["by_gpu"][direction] = fold_metrics(held)["total_s"]["mape"]
        if split == "machine_out" and preds:
            metrics["by_machine"] = {
                fold: {"gpu": held[0]["gpu"], "n": len(held),
                       "mape": fold_metrics(held)["total_s"]["mape"],
                       "coverage": fold_metrics(held)["total_s"]["coverage"],
                       "by_regime": {regime: fold_metrics(r)["total_s"] for regime in REGIMES
                                     if (r := [p for p in held if regime_of(p) == regime])}}
                for fold in dict.fromkeys(p["fold"] for p in preds)
                if (held := [p for p in preds if p["fold"] == fold])}
        if split == "shape_out":
            # A setting probed at one shape only has nothing left to extrapolate from when that
            # shape is held out: those points test an unprobed setting, not an unseen shape.
            probed = [p for p in preds if p["setting_probed"]]
            metrics["probed_settings"] = {
                "total_s": fold_metrics(probed)["total_s"],
                "excluded": sorted({f"{p['gpu']} {config_label(p['config'])}"
                                    for p in preds if not p["setting_probed"]})}
        metrics["by_regime"] = {regime: fold_metrics(held)["total_s"] for regime in REGIMES
                                if (held := [p for p in preds if regime_of(p) == regime])}
        report["metrics"][split] = metrics
        report["latency_mape"][split] = metrics["total_s"]["mape"]
        report["memory_mape"][split] = metrics["allocated_memory"]["mape"]
        report["nvml_memory_mape"][split] = metrics["peak_memory"]["mape"]
        report["coverage"][split] = metrics["total_s"]["coverage"]
        report["splits"][split] = {"description": description, "n": len(preds), "note": note}
    report["quantized"] = quantized_split(held_quantized)
    report["settings"] = settings_split(held_all)
    report["data"] = {
        "records": len(records), "ok": len(ok),
        "oom": sum(r["status"] == "oom" for r in records),
        "gpus": {g: sum(r["gpu"]["catalog_id"] == g for r in ok) for g in gpus},
        "weights": sorted({r["weights"] for r in records}),
        "problems": list(problems),
    }
    report["machines"] = machine_spread(records)
    if published is not None or capped:
        if progress:
            progress(steps, steps, "published and capped")
        everything = fit(records, specs, capped=capped)
    if capped:
        report["capped"] = capped_split(everything, capped, specs)
    if published is not None:
        report["published"] = published_split(everything, published)
        report["latency_mape"]["published"] = report["published"]["mape"]
        report["coverage"]["published"] = report["published"]["coverage"]
    report["goals"] = GOALS
    report["verdicts"] = _verdicts(report)
    return report


def quantized_split(held: dict[str, list[dict]]) -> dict:
    """The quantized precisions' held-out points, per precision and split (`metrics`). A
    point counts where its precision was measured at its compile setting in the fold's
    training records (any GPU); the others had no quantized evidence at all, which no
    prediction a user gets lacks (so a GPU held out that alone ran a precision scores
    nothing)."""
    scored = {split: [p for p in points if p["precision_probed"]]
              for split, points in held.items()}
    precisions = [q for q in QUANTIZATIONS
                  if any(p["config"]["precision"] == q for points in held.values()
                         for p in points)]
    return {
        "description": "runs of the quantized precisions, each held out as in its split and "
                       "scored where its precision was measured (at its compile setting) in "
                       "training",
        "metrics": {q: {split: fold_metrics([p for p in points
                                             if p["config"]["precision"] == q])
                        for split, points in scored.items()} for q in precisions},
        "unscored": {split: len(held[split]) - len(points) for split, points in scored.items()},
    }


def settings_split(held: dict[str, list[dict]]) -> dict:
    """Held-out points of each records.SETTING_OPTIONAL setting at values but its default."""
    value = lambda p, key: p["config"].get(key, CONFIG_OPTIONAL[key])
    groups = dict.fromkeys((k, value(p, k)) for k in SETTING_OPTIONAL for points in held.values()
                           for p in points if value(p, k) != CONFIG_OPTIONAL[k])
    return {"description": "runs of each setting beyond precision, attention, compile and "
                           "offload at a value but its default, held out as in its split",
            "metrics": {f"{k}={v}": {split: fold_metrics([p for p in points if value(p, k) == v])
                                     for split, points in held.items()} for k, v in groups}}


def capped_split(models, capped: list[dict], specs: dict[str, GpuSpec]) -> dict:
    """How well the minimum cap a config needs is known. `mape`: each minimum-cap search
    predicted by the model fitted without it. `pairs`: every measured (config, cap) outcome
    (each trial of a search, each run under a fixed cap) against two verdicts, `rule` (what
    `fits` uses: the measured minimum cap where a search exists, else the prediction) and
    `predicted` (the leave-one-out prediction alone): does the config run under that cap?"""
    rows, used = min_cap_rows(capped, specs)
    allocated = models.memory.predict(rows)["allocated"] if rows else np.zeros(0)
    caps = np.array([r["results"]["min_cap_gib"] * 1024 for r in used])
    loo = {}  # memory key -> (predicted minimum cap MiB, upper bound)
    errors = []  # (cap_family, absolute % error)
    worst = []  # each left-out search: config, measured and predicted minimum cap
    for i, row in enumerate(rows):
        if len(rows) < 2:
            continue
        rest = MinCapPredictor.fit(np.delete(caps, i), np.delete(allocated, i),
                                   rows[:i] + rows[i + 1:], {})
        point, upper, _ = rest.predict(allocated[i:i + 1], [row])
        loo[memory_key(row)] = (float(point[0]), float(upper[0]))
        errors.append((cap_family(row), float(100 * abs(point[0] - caps[i]) / caps[i])))
        worst.append({"config": _row_label(row), "measured_gib": caps[i] / 1024,
                      "predicted_gib": float(point[0]) / 1024,
                      "error_pct": float(100 * (point[0] - caps[i]) / caps[i])})
    worst.sort(key=lambda w: -abs(w["error_pct"]))
    pairs = []
    measured = models.min_cap.measured if models.min_cap else {}
    for row, record in _capped_outcomes(capped, specs):
        key = memory_key(row)
        for cap_gib, status in record:
            cap = cap_gib * 1024
            rule = bool(measured[key][0] <= cap) if key in measured else None
            predicted = bool(loo[key][1] <= cap) if key in loo else None
            pairs.append({"config": _row_label(row), "cap_gib": cap_gib, "ran": status == "ok",
                "rule": rule, "predicted": predicted})
    return {
        "description": "memory-capped runs (data/measurements/capped/): the smallest cap a "
                       "config runs under, left out one search at a time; every (config, cap) "
                       "outcome against the verdict",
        "searches": len(rows), **_ape([e for _, e in errors]),
        "by_family": {family: {"searches": sum(f == family for f, _ in errors),
                               **_ape([e for f, e in errors if f == family])}
                      for family in dict.fromkeys(f for f, _ in errors)},
        "confusion": {kind: _confusion(pairs, kind) for kind in ("rule", "predicted")},
        "worst": worst[:5],
        "pairs": pairs,
    }


def _row_label(row: dict) -> str:
    return Config(**{k: row[k] for k in ("height", "width", "batch", "precision", "attention",
                                         "compile", "offload", "caption_tokens")}).label()


def _ape(errors: list[float]) -> dict:
    return {"mape": float(np.mean(errors)) if errors else None,
            "max_ape": float(np.max(errors)) if errors else None}


def _capped_outcomes(capped: list[dict], specs: dict[str, GpuSpec]):
    """(row, [(cap GiB, ok|oom)]) per capped record the models answer for: a search's trials,
    or a fixed-cap run's outcome."""
    for record in capped:
        config = Config.from_record(record["config"])
        gpu = record["gpu"].get("catalog_id")
        if config.vae != "full" or gpu not in specs or record["status"] == "error":
            continue
        try:
            row = make_row(specs[gpu], replace(config, memory_cap_gib=None))
        except AdvisorError:
            continue
        trials = (record["results"] or {}).get("cap_trials")
        if trials:
            yield row, [(t["cap_gib"], t["status"]) for t in trials]
        elif config.memory_cap_gib is not None:
            yield row, [(config.memory_cap_gib, record["status"])]


def _confusion(pairs: list[dict], kind: str) -> dict:
    """Counts of a verdict against the outcome; `unsafe`: said it runs, it ran out of memory."""
    judged = [p for p in pairs if p[kind] is not None]
    return {"runs_and_ran": sum(p[kind] and p["ran"] for p in judged),
            "unsafe_runs_but_oom": sum(p[kind] and not p["ran"] for p in judged),
            "conservative_oom_but_ran": sum(not p[kind] and p["ran"] for p in judged),
            "oom_and_oom": sum(not p[kind] and not p["ran"] for p in judged),
            "not_judged": len(pairs) - len(judged)}


def machine_spread(records: list[dict]) -> dict:
    """How much the same config differs between machines of one GPU: per regime
    (Config.regime), the configs measured on two machines or more and the spread of their
    median totals (slowest / fastest - 1), median and largest; and `floor_mape_pct`, the mean
    % error of each machine's median against the median of the others': what predicting a
    machine from the others misses, a floor for any model of the GPU alone. Their records are
    repeats of one config to the fit, and every interval carries this spread
    (records.machine_log_ratios, Models.machine_bands)."""
    out: dict[str, list] = {}
    for (gpu, _), (c, machines) in machine_medians(records).items():
        if len(machines) < 2:
            continue
        medians = list(machines.values())
        others = [float(np.median(medians[:i] + medians[i + 1:])) for i in range(len(medians))]
        out.setdefault(c.regime(), []).append(
            {"gpu": gpu, "config": c.label(), "machines": len(machines),
             "spread_pct": 100 * (max(medians) / min(medians) - 1),
             "errors_pct": [100 * abs(o / m - 1) for m, o in zip(medians, others)]})
    return {regime: {"n": len(rows),
                     "median_pct": float(np.median([x["spread_pct"] for x in rows])),
                     "max_pct": float(max(x["spread_pct"] for x in rows)),
                     "floor_mape_pct": float(np.mean([e for x in rows for e in x["errors_pct"]])),
                     "configs": rows}
            for regime, rows in sorted(out.items())}


def config_label(c: dict) -> str:
    """A record config in a few words, e.g. "1344x768 b4 bf16 flash compile"."""
    return Config.from_record(c).label()


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
    """Each target against the figures: true, false, or null (not measurable)."""
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
    for split in SPLITS:
        value = report["coverage"][split]
        verdicts[f"coverage_{split}"] = None if value is None else lo <= value <= hi
    if "capped" in report:
        verdicts["capped_no_unsafe_fits"] = (
            report["capped"]["confusion"]["rule"]["unsafe_runs_but_oom"] == 0)
    if "published" in report:
        pub = report["published"]
        verdicts["latency_published"] = at_most(pub["mape"], "latency_mape_published_max_pct")
        verdicts["published_inside_interval"] = (None if not pub["n"]
                                                 else pub["coverage"] == 100.0)
    return verdicts


TARGET_NAMES = {"total_s": "latency total", "denoise_step_s": "denoise step",
                "allocated_memory": "memory (torch alloc)", "peak_memory": "memory (NVML used)"}
HEADER = (f"{'split':<11} {'target':<20} {'n':>4} {'MAPE%':>7} {'median%':>8} {'max%':>7} "
          f"{'cover%':>7}")


def _metric_lines(metrics: dict, lead: str = "") -> list[str]:
    """One line per split and target of `metrics` ({split: fold_metrics}), after `lead`."""
    lines = []
    for split, by_target in metrics.items():
        for target, name in TARGET_NAMES.items():
            m = by_target[target]
            cells = [_fmt(m[k]) for k in ("mape", "median_ape", "max_ape", "coverage")]
            lines.append(f"{lead}{split:<11} {name:<20} {m['n']:>4} {cells[0]:>7} {cells[1]:>8} "
                         f"{cells[2]:>7} {cells[3]:>7}")
    return lines


def format_table(report: dict) -> str:
    """The report as a plain-text table."""
    lines = [HEADER] + _metric_lines({split: report["metrics"][split] for split in SPLITS})
    q = report["quantized"]
    if q["metrics"]:
        unscored = ", ".join(f"{split} {n}" for split, n in q["unscored"].items() if n)
        lines += ["", f"quantized: {q['description']}; the rows above are the other "
                      f"precisions'" + (f" (unscored points: {unscored})" if unscored else ""),
                  f"{'precision':<10} {HEADER}"]
        for precision, by_split in q["metrics"].items():
            lines += _metric_lines({split: m for split, m in by_split.items()
                                    if m["total_s"]["n"]}, lead=f"{precision:<10} ")
    settings = report["settings"]
    lines += ["", f"settings: {settings['description']}"] if settings["metrics"] else []
    for name, by_split in settings["metrics"].items():
        lines += [name] + _metric_lines({k: m for k, m in by_split.items() if m["total_s"]["n"]},
                                        lead="  ")
    lines.append("")
    for split, info in report["splits"].items():
        lines.append(f"{split}: {info['description']}" + (f" -- {info['note']}"
                                                         if info["note"] else ""))
    by_gpu = report["metrics"]["gpu_out"].get("by_gpu") or {}
    lines += [f"  gpu_out {direction}: latency MAPE {_fmt(v)}%" for direction, v in by_gpu.items()]
    for fold, m in (report["metrics"]["machine_out"].get("by_machine") or {}).items():
        lines.append(f"  machine_out {fold}: {m['n']} points, latency MAPE {_fmt(m['mape'])}%, "
                     f"inside the 90% interval {_fmt(m['coverage'])}%" + "".join(
                         f"; {regime.replace('_', '-')} {r['n']}: MAPE {_fmt(r['mape'])}%, "
                         f"coverage {_fmt(r['coverage'])}%"
                         for regime, r in m["by_regime"].items()))
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
    for split in ("kfold", "shape_out", "gpu_out", "machine_out"):
        by_regime = report["metrics"][split].get("by_regime") or {}
        if len(by_regime) > 1:
            lines.append(f"latency total by regime ({split}): " + "; ".join(
                f"{regime.replace('_', '-')} {m['n']} points, MAPE {_fmt(m['mape'])}%, "
                f"coverage {_fmt(m['coverage'])}%" for regime, m in by_regime.items()))
    for regime, m in (report.get("machines") or {}).items():
        lines.append(f"same config on two machines or more ({regime.replace('_', '-')}, "
                     f"{m['n']} configs): totals differ by {m['median_pct']:.1f}% median, "
                     f"{m['max_pct']:.1f}% at most; a machine predicted by the others' median "
                     f"misses by {m['floor_mape_pct']:.1f}% (MAPE)")
    capped = report.get("capped")
    if capped:
        c = capped["confusion"]["rule"]
        lines += ["", f"capped: {capped['description']}",
                  f"  minimum cap, each search left out ({capped['searches']}): MAPE "
                  f"{_fmt(capped['mape'])}%, max {_fmt(capped['max_ape'])}% ("
                  + ", ".join(f"{family} precisions {m['searches']}: {_fmt(m['mape'])}%, max "
                              f"{_fmt(m['max_ape'])}%"
                              for family, m in capped["by_family"].items()) + ")",
                  "  worst left out: " + "; ".join(
                      f"{w['config']} measured {w['measured_gib']:g} GiB, predicted "
                      f"{w['predicted_gib']:.2f} ({w['error_pct']:+.0f}%)"
                      for w in capped["worst"][:3]),
                  f"  {len(capped['pairs'])} (config, cap) outcomes, verdict of the fits rule: "
                  f"{c['runs_and_ran']} runs and ran, {c['oom_and_oom']} out of memory as said, "
                  f"{c['unsafe_runs_but_oom']} said to run but ran out of memory, "
                  f"{c['conservative_oom_but_ran']} said not to run but ran (below the measured "
                  f"minimum: runs there are not reliable), {c['not_judged']} without a search"]
        p = capped["confusion"]["predicted"]
        lines.append(f"  prediction alone (left-out search): {p['runs_and_ran']} / "
                     f"{p['oom_and_oom']} right, {p['unsafe_runs_but_oom']} unsafe, "
                     f"{p['conservative_oom_but_ran']} conservative")
    pub = report.get("published")
    if pub:
        lines += ["", f"published: {pub['description']}: {pub['n']} scored of "
                      f"{pub['points_total']} points ({pub['untrusted']} untrusted, kept for "
                      f"the record; {pub.get('n_other_software', 0)} trusted of other "
                      "software, below)"]
        lines += [f"  {r['gpu']:<16} {r['config']:<24} {r['figure']:<9} measured "
                  f"{r['measured']:.3f} predicted {r['predicted']:.3f} "
                  f"[{r['interval'][0]:.3f}, {r['interval'][1]:.3f}] {r['error_pct']:+.1f}% "
                  f"{'inside' if r['inside'] else 'OUTSIDE'} ({r['id']})" for r in pub["rows"]]
        lines.append(f"  MAPE {_fmt(pub['mape'])}% (" + ", ".join(
            f"{g} {_fmt(v)}%" for g, v in pub["by_gpu"].items())
            + f"), inside the 90% interval {_fmt(pub['coverage'])}%")
        other = pub.get("other_software") or []
        if other:
            lines.append(f"  other software, not scored and feeding no interval: "
                         f"{pub['other_software_description']}")
            lines += [f"  {r['gpu']:<16} {r['config']:<24} {r['figure']:<9} measured "
                      f"{r['measured']:.3f} predicted {r['predicted']:.3f} ratio "
                      f"{r['ratio']:.2f} {r['stack']}"
                      + (f" {r['stack_version']}" if r["stack_version"] else "")
                      + f" ({r['id']})" for r in other]
    d = report["data"]
    lines.append(f"data: {d['ok']} ok + {d['oom']} oom records on "
                 f"{', '.join(f'{g} ({n})' for g, n in d['gpus'].items()) or 'no GPU'}; "
                 f"weights: {', '.join(d['weights'])}; {len(d['problems'])} problem(s)")
    lines.append("targets: " + ", ".join(
        f"{k} {'ok' if v else 'MISSED' if v is False else 'n/a'}"
        for k, v in report["verdicts"].items()))
    if report.get("shipped"):
        lines.append(f"report: the shipped one ({report['shipped']}); --recompute computes it "
                     "here")
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"
