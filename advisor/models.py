"""`Models`: the fitted latency and memory models with their intervals, ready to predict.

This is what the model cache holds, so it needs numpy only. Every prediction is a
`contract.Prediction` built by one function, `_prediction`, whether its figures are measured or
fitted, and says where they came from: `measured` (an exact probed config), `fitted` (a probed
GPU) or `transferred` (a GPU never probed: its catalog specs carry the fitted efficiencies over).
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from advisor import memory_rule
from advisor.contract import (
    ATTENTIONS, GB, QUANT_SCOPES, QUANTIZATIONS, Config, Latency, Memory, Power, Prediction,
    cfg_passes, compute_precision, dtype_of, with_precision,
)
from advisor.coverage import Probed, extrapolation
from advisor.errors import AdvisorError
from advisor.features import (
    LATENCY_STAGES, MIB, GpuSpec, make_row, match_key, refusal, row_of, setting_key, shape_config,
    shape_costs,
)
from advisor.intervals import (
    EXTRA_WIDTH, INTERVAL_KINDS, PLACEHOLDER_INTERVALS, ArchitectureWidth, bounds_summary,
    family_of,
)
from advisor.memory_rule import DEFAULT_MARGIN_GB
from advisor.predictors import LatencyPredictor, MemoryPredictor, MinCapPredictor
from advisor.transfer import TRANSFER_STAGES, carried_times, quantized_ratios

# The grid of square sides a prediction is checked against below it (Models._envelope)
ENVELOPE_SIDES = (512, 640, 768, 1024, 1280, 1536, 2048)


@lru_cache(maxsize=None)
def _grid_below(pixels: int, batch: int) -> tuple[tuple[int, int], ...]:
    """(side, batch) of the order envelope's grid below a config (Models._envelope)."""
    return tuple((side, b) for side in ENVELOPE_SIDES if side * side <= pixels
                 for b in (2 ** k for k in range(batch.bit_length()))
                 if (side * side, b) != (pixels, batch))


@dataclass(frozen=True)
class Measured:
    """The figures of one exact probed config: medians over its records."""

    stages_s: dict  # text_encode, denoise, vae_decode, other, total
    denoise_step_s: float
    interval_s: tuple[float, float]  # min and max over the measured repeats
    allocated_gb: float
    nvml_gb: float
    power_w: float | None
    energy_j_per_image: float | None
    where: str  # "record <file:line>, ..."


@dataclass(frozen=True)
class Carried:
    """How a quantized config's latency was made from its bf16 twin (Models._carried)."""

    twin: dict  # the bf16 query row on the same GPU, whose evidence the interval starts from
    extra: float  # log-width added to the twin's latency interval
    why: str  # the basis sentence of that width
    detail: str  # the prediction's source detail


@dataclass
class Models:
    """The fitted models. `predict` / `predict_many` answer for any valid config on any catalog
    GPU and raise AdvisorError for a query `refusal` names (a setting the contract does not
    offer: fp8 below compute capability 8.9, compiled int8-wo; or a precision without a catalog
    rate): a caller that searches many checks `refusal(gpu, config)` first, skips those queries
    rather than send them, and reports the reason."""

    model_version: str
    specs: dict  # catalog id -> GpuSpec, every catalog GPU
    latency: LatencyPredictor
    memory: MemoryPredictor
    estimator_params: dict  # "latency" / "memory" -> the estimators' get_params()
    probed: dict  # catalog id -> NVML memory total in GB of its records, per probed GPU
    measured: dict  # match key -> Measured, per exact probed config
    outcomes: dict  # catalog id -> [memory_rule.MeasuredRun], the measured ok and oom runs
    power: dict  # catalog id -> (max measured power W, records), per probed GPU
    min_cap: MinCapPredictor | None = None  # minimum allocator caps, when searches were run
    # profiled GPU id -> its op-class transfer ({} without profiles in the records)
    transfer: dict = field(default_factory=dict)
    # published misses per family (compute capability) on architectures never probed
    # (advisor.calibration): they set the architecture term of such GPUs' latency intervals
    published_misses: dict = field(default_factory=dict)
    reach: Probed | None = None  # the sizes and batches the ok records cover
    machine_bands: dict = field(default_factory=dict)  # regime -> MachineBand
    capped: list = field(repr=False, default_factory=list)  # records run under a memory cap
    intervals: dict = field(default_factory=lambda: dict.fromkeys(INTERVAL_KINDS,
                                                                  PLACEHOLDER_INTERVALS))
    calibration: dict = field(default_factory=dict)  # K-fold error summary (fitted labels)
    records: list = field(repr=False, default_factory=list)  # the fit's input, for validation
    # (gpu, precision, attention, compile, offload) -> {(height, width)} of the ok records
    shapes: dict = field(repr=False, default_factory=dict)
    problems: list = field(default_factory=list)  # records skipped, with file:line
    kept: list = field(default_factory=list)  # records of a setting not offered, kept on purpose
    cache_path: str | None = None
    _by_setting: dict | None = field(default=None, repr=False)  # _measured_bounds' index
    _grid_totals: dict | None = field(default=None, repr=False)  # _envelope's grid times
    _widths: dict | None = field(default=None, repr=False)  # _interval_width's, per key

    # ------------------------------------------------------------------------------ queries

    def spec(self, gpu_id: str) -> GpuSpec:
        key = str(gpu_id).strip().lower()
        if key in self.specs:
            return self.specs[key]
        close = difflib.get_close_matches(key, list(self.specs), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise AdvisorError(f"gpu: unknown GPU id {gpu_id!r}{hint} "
                           "(`advisor catalog list` shows every id)")

    def refusal(self, gpu_id: str, config: Config) -> str | None:
        """Why `predict` refuses a valid config on this GPU, or None (features.refusal)."""
        return refusal(self.spec(gpu_id), config)

    def predict(self, gpu_id: str, config: Config,
                memory_margin_gb: float = DEFAULT_MARGIN_GB) -> Prediction:
        """Latency, throughput, memory and fit of one config on one GPU."""
        return self.predict_many([(gpu_id, config)], memory_margin_gb)[0]

    def predict_many(self, queries: list[tuple[str, Config]],
                     memory_margin_gb: float = DEFAULT_MARGIN_GB) -> list[Prediction]:
        """predict() for many (gpu id, config) queries in one vectorized pass; AdvisorError
        for the first refused one."""
        rows = [make_row(self.spec(gpu_id), config) for gpu_id, config in queries]
        if not rows:
            return []
        configs = [c for _, c in queries]
        stages, lat_depth, carried, by_class = self._stage_times(rows, configs)
        run, stages, raised = self._envelope(rows, configs, stages)
        memory = self.memory.predict(rows)
        if self.min_cap is not None:
            memory["min_cap"], memory["min_cap_upper"], where = self.min_cap.predict(
                memory["allocated"], rows)
            memory["min_cap_where"] = np.array(where, dtype=object)
            memory["min_cap_family"] = np.array([self.min_cap.family(r) for r in rows],
                                                dtype=object)
        step = stages[:, LATENCY_STAGES.index("denoise_step")]
        return [self._prediction(row, config, {k: float(v[i]) for k, v in run.items()},
                                 float(step[i]), int(lat_depth[i].min()),
                                 {k: v[i] for k, v in memory.items()}, memory_margin_gb,
                                 by_class.get(i), carried.get(i), raised.get(i, ""))
                for i, (row, (_, config)) in enumerate(zip(rows, queries))]

    def _stage_times(self, rows: list[dict], configs: list[Config]):
        """(stage times (n, 5), fitted depth (n, 5), {row: Carried}, {row: transfer basis}):
        the fitted times, quantized rows carried from their bf16 twin (`_carried`) and rows on
        GPUs never probed transferred class by class (`_by_class`)."""
        stages, depth = self.latency.predict(rows)
        stages, depth, carried = self._carried(rows, configs, stages, depth)
        stages, by_class = self._by_class(rows, configs, stages)
        return stages, depth, carried, by_class

    def _carried(self, rows: list[dict], configs: list[Config], stages: np.ndarray,
                 depth: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, Carried]]:
        """Quantized rows whose setting was not measured on their GPU: (stages, depth) with
        their text-encode, denoise-step and VAE times replaced by their bf16 twin's on the same GPU
        (fitted, or transferred class by class) times the quantized / bf16 ratio measured on
        the row's own GPU at another attention backend, else on each GPU that measured it
        (advisor.transfer.quantized_ratios; mean over them), and their depth by the twin's;
        and {row index: Carried} for those rows. Without any such measurement a row keeps its
        fitted times (the setting counts as never probed)."""
        refs, found = {}, {}  # found: the references of a setting on a GPU, looked up once
        for i, r in enumerate(rows):
            if r["precision"] in QUANTIZATIONS and (key := setting_key(r)) not in self.shapes:
                refs[i] = found[key] if key in found else found.setdefault(key, self._ratio_refs(r))
        index = [i for i, found in refs.items() if found]
        if not index:
            return stages, depth, {}
        stages, depth = stages.copy(), depth.copy()
        twin_configs = [with_precision(configs[i], dtype_of(configs[i].precision)) for i in index]
        twins = [row_of(self.specs[rows[i]["gpu"]], c) for i, c in zip(index, twin_configs)]
        twin_stages, twin_depth = self.latency.predict(twins)
        twin_stages, twin_class = self._by_class(twins, twin_configs, twin_stages)
        pairs = [(n, gpu, attention) for n, i in enumerate(index) for gpu, attention in refs[i]]
        at_refs = lambda base: [row_of(self.specs[gpu], replace(base[n], attention=attention))
                                for n, gpu, attention in pairs]
        ratios = quantized_ratios(self.latency, at_refs([configs[i] for i in index]),
                                  at_refs(twin_configs), [rows[index[n]] for n, _, _ in pairs])
        columns = [LATENCY_STAGES.index(s) for s in TRANSFER_STAGES]
        of_row: dict[int, list[int]] = {}  # row -> its pairs (one ratio per reference)
        for k, (n, _, _) in enumerate(pairs):
            of_row.setdefault(n, []).append(k)
        out = {}
        for n, i in enumerate(index):
            mean = ratios[of_row[n]].mean(axis=0)
            stages[i, columns] = twin_stages[n, columns] * mean
            depth[i] = twin_depth[n]
            out[i] = self._carried_basis(rows[i], twins[n], refs[i],
                                         twin_class.get(n) or self._source_detail(twins[n]))
        return stages, depth, out

    def _envelope(self, rows: list[dict], configs: list[Config],
                  stages: np.ndarray) -> tuple[dict, np.ndarray, dict[int, str]]:
        """(run times, stage times, {row: sentence}): the run composed from `stages`, each row
        raised to the largest time of its GPU and setting on the grid below it (ENVELOPE_SIDES
        squares of fewer pixels, powers-of-two batches up to its own), with a sentence for each
        raised row: a larger config of a setting is never faster, though the fits, the carried
        quantized ratios and the transfer's host/GPU switch need not compose into a rising
        curve. Predictions on the grid keep its order exactly; a setting's shapes share it."""
        below = [((row["gpu"], c.family()), _grid_below(c.pixels, c.batch))  # family: all
                 for row, c in zip(rows, configs)]  # of a config but its shape and batch
        of_family = {base: c for (base, _), c in zip(below, configs)}
        if self._grid_totals is None:
            self._grid_totals = {}
        totals = self._grid_totals  # a grid point's time is the same in every call: kept
        run = self.latency.compose(stages, np.array([r["steps"] for r in rows], dtype=float))
        for (base, _), c, total in zip(below, configs, run["total"]):  # rows on the grid
            if c.height == c.width in ENVELOPE_SIDES and c.batch & (c.batch - 1) == 0:
                totals.setdefault((*base, c.height, c.batch), float(total))
        keys = [k for k in dict.fromkeys((*base, *p) for base, grid in dict.fromkeys(below)
                                         for p in grid) if k not in totals]
        if keys:
            l_configs = [replace(of_family[(gpu, family)], height=side, width=side, batch=batch)
                         for gpu, family, side, batch in keys]
            l_rows = [row_of(self.specs[key[0]], c) for key, c in zip(keys, l_configs)]
            l_stages = self._stage_times(l_rows, l_configs)[0]
            totals.update(zip(keys, self.latency.compose(
                l_stages, np.array([r["steps"] for r in l_rows], dtype=float))["total"]))
        stages, step, notes = stages.copy(), LATENCY_STAGES.index("denoise_step"), {}
        for i, (base, grid) in enumerate(below):
            if not grid:
                continue
            top = (*base, *max(grid, key=lambda point: totals[(*base, *point)]))
            if totals[top] > run["total"][i]:
                scale = totals[top] / run["total"][i]
                for values in run.values():
                    values[i] *= scale
                stages[i, step] *= scale
                notes[i] = (f"; raised to {totals[top]:.3f} s, the time predicted at "
                            f"{top[2]}x{top[2]} b{top[3]} (a larger config of a setting is never "
                            "faster)")
        return run, stages, notes

    def _carried_basis(self, row: dict, twin: dict, refs: list, twin_detail: str) -> Carried:
        precision, gpu = row["precision"], row["gpu"]
        where = ", ".join(f"{g} ({a} attention)" for g, a in refs)
        mode = "compiled" if row["compile"] else "eager"
        detail = (f"{precision}: the bf16 config's stage times on {gpu} ({twin_detail}) x the "
                  f"{mode} {precision} / bf16 ratio of the times fitted on {where}")
        if row["tflops"] != row["dtype_tflops"]:
            ref = self.specs[refs[0][0]].tflops
            detail += (f", its {precision} matmul term scaled by the {precision} / bf16 peak "
                       f"ratio {row['tflops'] / row['dtype_tflops']:.2f} against "
                       f"{ref[precision] / ref['bf16']:.2f}")
        detail += "; memory from the quantized weight bytes and the fitted activations"
        if refs[0][0] == gpu:
            extra = EXTRA_WIDTH["latency"]["setting"]
            why = (f"; +{extra:.0%} because this {precision} setting was never probed on "
                   f"{gpu}: its ratio to bf16 is carried from {where}")
        else:
            extra = EXTRA_WIDTH["latency"]["quantized"]
            why = (f"; +{extra:.0%} (assumed) because the {precision} / bf16 ratio is carried "
                   f"from {where}: no {precision} run on {gpu} was measured or published to "
                   "judge it")
        return Carried(twin, extra, why, detail)

    def _ratio_refs(self, row: dict) -> list[tuple[str, str]]:
        """(GPU, attention) pairs that measured the row's quantized precision and its bf16 twin
        at the row's other settings, the row's attention where measured, else the first backend
        measured: the row's own GPU if it qualifies, else every probed GPU that does."""
        found = []
        for gpu in sorted(self.probed):
            both = [a for a in ATTENTIONS if all(setting_key({
                **row, "gpu": gpu, "precision": p, "attention": a, "offload": "none",
                "quant_scope": row["quant_scope"] if p in QUANTIZATIONS else QUANT_SCOPES[0]})
                in self.shapes for p in (row["precision"], dtype_of(row["precision"])))]
            if both:
                found.append((gpu, row["attention"] if row["attention"] in both else both[0]))
        own = [(gpu, a) for gpu, a in found if gpu == row["gpu"]]
        return own or found

    def _by_class(self, rows: list[dict], configs: list[Config],
                  stages: np.ndarray) -> tuple[np.ndarray, dict]:
        """(stages, {row index: what the figure rests on}): the stage times of rows on GPUs
        never probed replaced by the op-class transfer (advisor.transfer) from each probed
        GPU's fitted times, averaged over them."""
        if not self.transfer:
            return stages, {}
        # a probed GPU without profiles of its own borrows those of the most profiled one
        default = max(self.transfer.values(), key=lambda t: t.n_profiles)
        index = [i for i, r in enumerate(rows)
                 if r["gpu"] not in self.probed and default.applies(r)]
        refs = sorted(g for g in self.probed if g in default.rates)
        if not index or not refs:
            return stages, {}
        estimates = [carried_times(self.transfer.get(ref, default), ref, self.specs[ref],
                                   self.latency, rows, configs, index) for ref in refs]
        stages = stages.copy()
        stages[index] = np.mean(estimates, axis=0)
        used = [self.transfer.get(ref, default) for ref in refs]
        basis = {g: "; ".join(f"from {ref}: {t.basis(g)}" for ref, t in zip(refs, used))
                 + " (the mean of the estimates)" for g in {rows[i]["gpu"] for i in index}}
        return stages, {i: basis[rows[i]["gpu"]] for i in index}

    def estimators(self) -> dict:
        """The fitted scikit-learn estimators ("latency", "memory"), rebuilt from their
        parameters and fitted predictors (the cache holds these, not sklearn objects, so that
        loading it needs no sklearn)."""
        from advisor.estimators import LatencyRegressor, MemoryRegressor

        out = {}
        for kind, cls, predictor in (("latency", LatencyRegressor, self.latency),
                                     ("memory", MemoryRegressor, self.memory)):
            out[kind] = cls(**self.estimator_params[kind])
            out[kind].predictor_ = predictor
        return out

    def summary(self) -> dict:
        """What `advisor fit` prints: data used, calibration, intervals, fitted efficiencies."""
        ok = [r for r in self.records if r["status"] == "ok"]
        probed_archs = {self.specs[g].architecture for g in self.probed}
        efficiency = {}
        for gpu in sorted(self.probed):
            config = Config(1024, 1024)
            pred = self.predict(gpu, config)
            matmul = self.latency.efficiencies(make_row(self.specs[gpu], config))[
                "denoise_step"]["matmul"]
            efficiency[gpu] = {"denoise_step_s": pred.latency.denoise_step_s, "mfu": pred.mfu,
                               "matmul_efficiency": 1 / matmul if matmul else None,
                               "source": pred.source}
        return {
            "model_version": self.model_version,
            "records_used": len(ok),
            "oom_records": sum(r["status"] == "oom" for r in self.records),
            "gpus": {g: sum(r["gpu"]["catalog_id"] == g for r in ok) for g in sorted(self.probed)},
            "calibration": self.calibration,
            "estimator_params": self.estimator_params,
            "intervals": {kind: bounds_summary(iv) | {
                "host_bound": bounds_summary(iv.host_bound) if iv.host_bound else None}
                for kind, iv in self.intervals.items()},
            "machine_bands": {r: {"bounds": list(b.bounds), "n": b.n}
                              for r, b in self.machine_bands.items()},
            "architecture_widths": {
                family: {"half_width": w.half_width, "points": [list(p) for p in w.points]}
                for family in sorted({family_of(spec) for spec in self.specs.values()
                                      if spec.architecture not in probed_archs})
                if (w := ArchitectureWidth.of(family, self.published_misses.get(family, [])))},
            "efficiency_1024": efficiency,
            "problems": self.problems,
            "kept": self.kept,
            "cache_path": self.cache_path,
        }

    # ------------------------------------------------------------------------------ pieces

    def _width_key(self, row: dict) -> tuple:
        """What a row's interval widths depend on: its GPU, whether its precision is quantized,
        its regime, whether its setting was probed at one other shape only, and its doublings
        beyond the probed reach, in words."""
        shapes = self.shapes.get(setting_key(row), ())
        config = shape_config(row)
        doublings = self._beyond(row)
        return (row["gpu"], row["precision"] in QUANTIZATIONS, config.regime(),
                len(shapes) == 1 and (row["height"], row["width"]) not in shapes, doublings,
                extrapolation(config, self.reach) if doublings > 0 else "")

    def _interval_width(self, kind: str, row_key: tuple, depth: int):
        """(lo, hi) log bounds for a prediction and the sentence saying what they rest on, for
        a row's `_width_key`; kept per key (rows of one GPU, regime and reach share them)."""
        key = (kind, depth, *row_key)
        if self._widths is None:
            self._widths = {}
        if key not in self._widths:
            self._widths[key] = self._width(*key)
        return self._widths[key]

    def _width(self, kind: str, depth: int, gpu: str, quantized_precision: bool, regime: str,
               one_other_shape: bool, doublings: float, beyond: str):
        """_interval_width's figures from what they depend on (`_width_key`)."""
        iv, extra = self.intervals[kind], EXTRA_WIDTH[kind]
        spec = self.specs[gpu]
        max_depth = len(self.latency.tables["denoise_step"].levels) - 1
        quantized = depth == max_depth and quantized_precision and iv.quantized
        host_bound = ""
        if not quantized and iv.host_bound and regime == "host_bound":
            iv, host_bound = iv.host_bound, (" of host-bound configs (the host issuing kernels "
                                             "sets the pace; machines of one GPU differ most "
                                             "there)")
        if quantized:
            lo, hi = iv.quantized
            basis = (f"{iv.n_quantized} K-fold and leave-one-shape-out residuals of the "
                     "quantized precisions' runs")
        elif depth == max_depth:  # fitted at this GPU's own level
            lo, hi = iv.fitted
            basis = (f"{iv.n_fitted} K-fold and leave-one-shape-out residuals{host_bound} on "
                     "the probed GPUs")
        elif iv.transferred is not None:
            lo, hi = iv.transferred
            basis = f"leave-one-GPU-out residuals of {iv.n_transferred} configs{host_bound}"
        else:
            lo, hi = iv.fitted[0] - extra["transfer"], iv.fitted[1] + extra["transfer"]
            basis = (f"K-fold residuals widened by an assumed {extra['transfer']:.0%} for "
                     "transfer (only one GPU probed, so no leave-one-GPU-out evidence)")
        if depth == 0:
            lo, hi = lo - extra["setting"], hi + extra["setting"]
            basis += f"; +{extra['setting']:.0%} because this setting was never probed"
        elif one_other_shape:
            lo, hi = lo - extra["shape"], hi + extra["shape"]
            basis += (f"; +{extra['shape']:.0%} because this setting was probed at one shape "
                      "only")
        if doublings > 0:
            widen = extra["extrapolated"] * doublings
            lo, hi = lo - widen, hi + widen
            basis += f"; +{widen:.0%} because the config is beyond the probed sizes ({beyond})"
        probed_archs = {self.specs[g].architecture for g in self.probed}
        if spec.architecture not in probed_archs:
            if kind == "latency":
                width = self.architecture_width(spec)
                lo, hi = -math.hypot(lo, width.half_width), math.hypot(hi, width.half_width)
                basis += f"; {width.words(spec.architecture)}"
            else:
                lo, hi = lo - extra["architecture"], hi + extra["architecture"]
                basis += (f"; +{extra['architecture']:.0%} because no {spec.architecture} GPU "
                          "was probed")
        if kind == "latency":
            lo, hi, basis = self._with_machines(lo, hi, basis, regime)
        return min(lo, 0.0), max(hi, 0.0), basis

    def recalibrate(self, intervals: dict | None = None,
                    published_misses: dict | None = None) -> None:
        """Set the calibrated interval widths (advisor.calibration); predictions made before
        keep theirs, later ones use these."""
        if intervals is not None:
            self.intervals = intervals
        if published_misses is not None:
            self.published_misses = published_misses
        self._widths = None

    def architecture_width(self, spec: GpuSpec) -> ArchitectureWidth:
        """The unprobed-architecture term of this GPU's latency interval (its family's)."""
        family = family_of(spec)
        return ArchitectureWidth.of(family, self.published_misses.get(family, []))

    def _with_machines(self, lo: float, hi: float, basis: str, regime: str):
        """Latency bounds widened by the machine spread of a regime (MachineBand)."""
        band = self.machine_bands.get(regime)
        if band is None:
            return lo, hi, basis
        lo, hi = band.widen(lo, hi)
        return lo, hi, basis + f"; with {band.words()}"

    def _measured_bounds(self, row: dict) -> tuple[tuple | None, tuple | None]:
        """(floor, ceiling): the slowest measured config of this GPU and setting (steps,
        caption, CFG alike) with no more pixels and no larger batch, and the fastest one with
        no fewer pixels and no smaller batch, each as (total s, config in words), or None. A
        larger config runs at least as long as a smaller one: predictions keep that order
        where fits and measurements (of different machines and sessions) would break it."""
        if self._by_setting is None:
            self._by_setting = {}
            for key, m in self.measured.items():
                gpu, height, width, batch, *rest = key
                self._by_setting.setdefault((gpu, *rest), []).append(
                    (height * width, batch, m.stages_s["total"], f"{width}x{height} b{batch}"))
        key = match_key(row)
        pixels, batch = row["height"] * row["width"], row["batch"]
        same = [x for x in self._by_setting.get((key[0], *key[4:]), ())
                if (x[0], x[1]) != (pixels, batch)]
        below = [(t, label) for p, b, t, label in same if p <= pixels and b <= batch]
        above = [(t, label) for p, b, t, label in same if p >= pixels and b >= batch]
        return max(below, default=None), min(above, default=None)

    def _ordered(self, total: float, interval: tuple, basis: str, row: dict,
                 measured: bool) -> tuple[float, tuple, str]:
        """`total` (and its interval) kept between the measured smaller and larger configs of
        its setting (_measured_bounds): lowered to the ceiling (a prediction only), then raised
        to the floor; the interval keeps its low end and moves its high end along."""
        floor, ceiling = self._measured_bounds(row)
        target = total
        if ceiling and not measured and ceiling[0] < target:
            target, why = ceiling[0], f"lowered to the measured {ceiling[0]:.3f} s of {ceiling[1]}"
        if floor and floor[0] > target:
            target, why = floor[0], f"raised to the measured {floor[0]:.3f} s of {floor[1]}"
        if target == total:
            return total, interval, basis
        lo, hi = interval
        interval = (min(lo, target), max(hi * target / total, target))
        return target, interval, (f"{basis}; {why} (a larger config of a setting is never "
                                  f"faster; it was {total:.3f} s)")

    def _beyond(self, row: dict) -> float:
        """Doublings beyond the probed sizes, batches or pixels in flight (0 inside them)."""
        if self.reach is None:
            return 0.0
        c, r = shape_config(row), self.reach
        ratios = (c.pixels / r.max_pixels, r.min_pixels / c.pixels, c.batch / r.max_batch,
                  c.oom_size() / r.max_work)
        return max(0.0, float(np.log2(max(ratios))))

    def _prediction(self, row: dict, config: Config, run: dict, step: float, lat_depth: int,
                    memory: dict, margin_gb: float, by_class: str | None = None,
                    carried: Carried | None = None, raised: str = "") -> Prediction:
        """The one constructor of predictions: fitted figures, replaced by the measured ones
        where this exact config was probed; then throughput, power and the memory verdict."""
        mem_depth = int(memory["depth"])
        row_key = self._width_key(row)
        llo, lhi, latency_basis = self._interval_width(
            "latency", self._width_key(carried.twin) if carried else row_key, lat_depth)
        if carried:
            llo, lhi = llo - carried.extra, lhi + carried.extra
            latency_basis += carried.why
        latency_basis += raised
        mlo, mhi, memory_basis = self._interval_width("memory", row_key, mem_depth)
        alo, ahi, _ = self._interval_width("allocated", row_key, mem_depth)
        measured = self.measured.get(match_key(row))
        if measured:
            stages, step = measured.stages_s, measured.denoise_step_s
            total = stages["total"]
            rlo, rhi, latency_basis = self._with_machines(
                math.log(measured.interval_s[0] / total), math.log(measured.interval_s[1] / total),
                "min and max over the measured repeats and machines", shape_config(row).regime())
            interval = (total * math.exp(rlo), total * math.exp(rhi))
            allocated, nvml = measured.allocated_gb, measured.nvml_gb
            allocated_iv = nvml_iv = None
            memory_basis = "the measured peak (one figure per run)"
            source, detail = "measured", measured.where
            upper_allocated = allocated
        else:
            stages, total = run, run["total"]
            interval = (total * float(np.exp(llo)), total * float(np.exp(lhi)))
            allocated, nvml = _gb(memory["allocated"]), _gb(memory["nvml"])
            allocated_iv = (allocated * float(np.exp(alo)), allocated * float(np.exp(ahi)))
            floor = _gb(memory["allocated"] + memory["context"])
            # NVML reads at most the card's memory where the run fits; past it the run does not
            # happen, and the figure keeps its whole interval
            upper, capacity_gb = nvml * float(np.exp(mhi)), _gb(row["capacity_mib"])
            nvml_iv = (max(nvml * float(np.exp(mlo)), floor),
                       min(upper, capacity_gb) if nvml <= capacity_gb else upper)
            source = "fitted" if row["gpu"] in self.probed else "transferred"
            detail = carried.detail if carried else by_class or self._source_detail(row)
            upper_allocated = allocated_iv[1]
        total, interval, latency_basis = self._ordered(stages["total"], interval, latency_basis,
                                                       row, measured is not None)
        if total != stages["total"]:
            scale = total / stages["total"]
            stages, step = {k: v * scale for k, v in stages.items()}, step * scale
        latency = Latency(
            text_encode_s=stages["text_encode"], denoise_s=stages["denoise"],
            vae_decode_s=stages["vae_decode"], other_s=stages["other"],
            total_s=stages["total"], denoise_step_s=step, interval_s=tuple(interval),
            basis=latency_basis)
        context = _gb(memory["context"])
        min_cap, kind, min_cap_source = self._min_cap(memory, upper_allocated, allocated,
                                                      measured)
        needed = memory_rule.needed_gb(min_cap, context, margin_gb)
        capacity = _gb(row["capacity_mib"])
        fits, reason = memory_rule.verdict(
            config, needed, capacity, self.outcomes.get(row["gpu"], []),
            basis=f"minimum cap {min_cap:.1f} GB, {kind}, + {needed - min_cap:.1f} GB")
        mem = Memory(
            allocated_gb=allocated, allocated_interval_gb=allocated_iv or (allocated, allocated),
            nvml_gb=nvml, nvml_interval_gb=nvml_iv or (nvml, nvml),
            nvml_capped=bool(memory["nvml"] < memory["nvml_free"]) and not measured,
            min_cap_gb=min_cap, min_cap_source=min_cap_source,
            needed_gb=needed, capacity_gb=capacity,
            capacity_source=self.specs[row["gpu"]].capacity_source,
            rule=(f"needed = the smallest allocator cap the run needs ({min_cap_source}) + the "
                  f"larger of {margin_gb:g} GB and the CUDA context ({context:.2f} GB); measured "
                  "runs of this GPU and setting decide first (advisor.memory_rule)"),
            basis=memory_basis)
        images = config.batch * cfg_passes(config.cfg)
        achieved = images * shape_costs(config.height, config.width,
                                        config.caption_tokens)["forward_tflops"] / step
        return Prediction(
            gpu=row["gpu"], config=config, latency=latency, memory=mem, fits=fits,
            fits_reason=reason, source=source, source_detail=detail,
            achieved_tflops=achieved, mfu=achieved / row["tflops"],
            power=self._power(row, measured, latency.total_s), model_version=self.model_version)

    def _min_cap(self, memory: dict, upper_allocated: float, allocated: float,
                 measured: Measured | None) -> tuple[float, str, str]:
        # upper_allocated / allocated: the measured peak, or the predicted one's upper bound
        """(GB, its kind: assumed, capped-measured or fitted, and where it comes from) of the
        smallest allocator cap a run needs, upper bound."""
        if self.min_cap is None:  # no min-cap searches: peak allocated + allocator fragments
            resident = _gb(memory["allocated"] - memory["activations"])
            fragments = self.memory.fragmentation * max(allocated - resident, 0.0)
            return upper_allocated + fragments, "assumed", (
                f"assumed: torch peak allocated{'' if measured else ' (upper bound)'} + "
                f"{self.memory.fragmentation:.2f} x activations for allocator fragments "
                f"({self.memory.fragmentation_basis}); no minimum-cap searches in the data")
        if memory["min_cap_where"]:
            return (_gb(memory["min_cap"]), "capped-measured",
                    f"capped-measured ({memory['min_cap_where']})")
        # The offset and its misses were fitted against the point prediction of the peak
        # (the same on every GPU of a software stack), so the bound builds on that.
        family = memory["min_cap_family"]
        offset, (_, miss), n = self.min_cap.offsets[family]
        return _gb(memory["min_cap_upper"]), "fitted", (
            f"fitted: predicted peak allocated {offset / 1024:+.2f} GiB, + {miss / 1024:.2f} GiB "
            f"for the largest miss over {n} minimum-cap searches of the {family} precisions")

    def _source_detail(self, row: dict) -> str:
        c = self.calibration
        err = (f"K-fold latency MAPE {c['latency_mape']:.1f}%, torch-allocated memory MAPE "
               f"{c['memory_mape']:.1f}%" if c.get("latency_mape") is not None
               else "no cross-validation (too few records)")
        if row["gpu"] in self.probed:
            return f"fitted roofline/memory model on {row['gpu']} measurements ({err})"
        probed = ", ".join(sorted(self.probed))
        return (f"transferred from {probed} via catalog specs of {row['gpu']} "
                f"(dense {compute_precision(row['precision'])} TFLOPS, memory bandwidth; {err} on "
                "probed GPUs)")

    def _power(self, row: dict, measured: Measured | None, total_s: float) -> Power:
        """Board power while denoising: measured for a measured config, else the most any
        record of this GPU drew, else unknown (the catalog TDP is the caller's fallback);
        energy per image measured, else that power over the predicted run."""
        if measured and measured.power_w is not None:
            watts, source = measured.power_w, f"measured ({measured.where})"
        elif row["gpu"] in self.power:
            watts, n = self.power[row["gpu"]]
            source = f"max measured power_w over {n} records of {row['gpu']}"
        else:
            return Power(None, None, None)
        energy = measured.energy_j_per_image if measured else None
        if energy is None:
            energy = watts * total_s / row["batch"]
        return Power(watts, source, energy)


def _gb(mib) -> float:
    """MiB (what the memory model predicts) as decimal GB (what predictions print)."""
    return float(mib * MIB / GB)

