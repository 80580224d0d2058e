"""`Models`: the fitted latency and memory models with their intervals, ready to predict.

This is what the model cache holds, so it needs numpy only. Every prediction says where it came
from: `measured` (an exact probed config: the measured figures), `fitted` (a probed GPU) or
`transferred` (a GPU never probed: its catalog specs carry the fitted efficiencies over).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from advisor.errors import AdvisorError
from advisor.features import LATENCY_STAGES, MIB, GpuSpec, make_row, shape_costs
from advisor.predictors import LatencyPredictor, MemoryPredictor

GB = 1e9  # decimal, as the catalog's memory_gb
INTERVAL_COVERAGE = 0.90
# Headroom a config must leave below the GPU's memory to count as fitting, at least: allocator
# fragmentation and other processes' memory vary from run to run.
MIN_MEMORY_MARGIN_GB = 1.0
# Extra log-width of an interval where the evidence does not reach: a setting never probed
# (pooled efficiencies), a GPU of an architecture never probed, and (with only one GPU probed,
# so no GPU-out residuals) any transfer. Assumptions, stated in each prediction.
# A setting probed at a single shape gets `shape` added for other shapes: one shape cannot tell
# how its time splits between terms that scale differently with the shape.
EXTRA_WIDTH = {
    "latency": {"setting": 0.15, "shape": 0.10, "architecture": 0.25, "transfer": 0.10},
    "memory": {"setting": 0.15, "shape": 0.05, "architecture": 0.10, "transfer": 0.03},
    "allocated": {"setting": 0.15, "shape": 0.02, "architecture": 0.05, "transfer": 0.02},
}


@dataclass
class Intervals:
    """Log-ratio bounds (measured / predicted) at INTERVAL_COVERAGE, per kind of prediction.

    `fitted` comes from K-fold residuals on the probed GPUs, `transferred` from leave-one-GPU-out
    residuals (None when only one GPU was probed)."""

    fitted: tuple[float, float]
    transferred: tuple[float, float] | None
    n_fitted: int = 0
    n_transferred: int = 0


@dataclass
class Models:
    model_version: str
    specs: dict  # catalog id -> GpuSpec, every catalog GPU
    latency: LatencyPredictor
    memory: MemoryPredictor
    intervals: dict  # "latency" / "memory" -> Intervals
    probed: dict  # catalog id -> NVML memory total in GB, per probed GPU
    measured: dict  # match key -> measured figures of an exact probed config
    ooms: dict  # (gpu, precision, attention, compile, offload) -> [(size, where)]
    power: dict  # catalog id -> (max measured power W, records), per probed GPU
    calibration: dict  # K-fold error summary used to label fitted figures
    records: list = field(repr=False, default_factory=list)  # the fit's input, for validation
    # (gpu, precision, attention, compile, offload) -> {(height, width)} of the ok records
    shapes: dict = field(repr=False, default_factory=dict)
    problems: list = field(default_factory=list)  # records skipped, with file:line
    cache_path: str | None = None
    _validation: dict | None = field(default=None, repr=False)

    # ------------------------------------------------------------------------------ queries

    def spec(self, gpu_id: str) -> GpuSpec:
        key = str(gpu_id).strip().lower()
        if key in self.specs:
            return self.specs[key]
        close = difflib.get_close_matches(key, list(self.specs), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise AdvisorError(f"gpu: unknown GPU id {gpu_id!r}{hint} "
                           "(`advisor catalog list` shows every id)")

    def predict(self, gpu_id: str, height: int, width: int, batch: int = 1, steps: int = 9,
                precision: str = "bf16", attention: str = "native", compile: bool = False,
                offload: str = "none", cfg: bool = False, caption_tokens: int = 64) -> dict:
        """Latency, throughput, memory and fit of one config; see docs/internals.md."""
        return self.predict_many([dict(
            gpu_id=gpu_id, height=height, width=width, batch=batch, steps=steps,
            precision=precision, attention=attention, compile=compile, offload=offload, cfg=cfg,
            caption_tokens=caption_tokens)])[0]

    def predict_many(self, configs: list[dict]) -> list[dict]:
        """predict() for many configs (dicts of its keyword arguments) in one vectorized pass."""
        rows = []
        for c in configs:
            spec = self.spec(c["gpu_id"])
            probed_gb = self.probed.get(spec.id)
            rows.append(make_row(spec, **{k: v for k, v in c.items() if k != "gpu_id"},
                                 capacity_mib=probed_gb * GB / MIB if probed_gb else None))
        if not rows:
            return []
        stages, lat_depth = self.latency.predict(rows)
        steps = np.array([r["steps"] for r in rows], dtype=float)
        run = self.latency.compose(stages, steps)
        memory = self.memory.predict(rows)
        return [self._assemble(row, {k: float(v[i]) for k, v in run.items()},
                               float(stages[i, LATENCY_STAGES.index("denoise_step")]),
                               lat_depth[i].min(), {k: v[i] for k, v in memory.items()})
                for i, row in enumerate(rows)]

    # ------------------------------------------------------------------------------ pieces

    def _interval_width(self, kind: str, row: dict, depth: int, max_depth: int):
        """(lo, hi) log bounds for a prediction and the sentence saying what they rest on."""
        iv, extra = self.intervals[kind], EXTRA_WIDTH[kind]
        spec = self.specs[row["gpu"]]
        if depth == max_depth:  # fitted at this GPU's own level
            lo, hi = iv.fitted
            basis = (f"{iv.n_fitted} K-fold and leave-one-shape-out residuals on the probed "
                     "GPUs")
        elif iv.transferred is not None:
            lo, hi = iv.transferred
            basis = f"leave-one-GPU-out residuals of {iv.n_transferred} configs"
        else:
            lo, hi = iv.fitted[0] - extra["transfer"], iv.fitted[1] + extra["transfer"]
            basis = (f"K-fold residuals widened by an assumed {extra['transfer']:.0%} for "
                     "transfer (only one GPU probed, so no leave-one-GPU-out evidence)")
        shapes = self.shapes.get(setting_key(row), ())
        if depth == 0:
            lo, hi = lo - extra["setting"], hi + extra["setting"]
            basis += f"; +{extra['setting']:.0%} because this setting was never probed"
        elif len(shapes) == 1 and (row["height"], row["width"]) not in shapes:
            lo, hi = lo - extra["shape"], hi + extra["shape"]
            basis += (f"; +{extra['shape']:.0%} because this setting was probed at one shape "
                      "only")
        probed_archs = {self.specs[g].architecture for g in self.probed}
        if spec.architecture not in probed_archs:
            lo, hi = lo - extra["architecture"], hi + extra["architecture"]
            basis += (f"; +{extra['architecture']:.0%} because no {spec.architecture} GPU "
                      "was probed")
        return (min(lo, 0.0), max(hi, 0.0)), basis

    def _assemble(self, row, latency, step, lat_depth, memory):
        spec = self.specs[row["gpu"]]
        max_depth = len(self.latency.tables["denoise_step"].levels) - 1
        mem_depth = int(memory["depth"])
        total = latency["total"]
        (llo, lhi), latency_basis = self._interval_width("latency", row, lat_depth, max_depth)
        (mlo, mhi), memory_basis = self._interval_width("memory", row, mem_depth, max_depth)
        (alo, ahi), _ = self._interval_width("allocated", row, mem_depth, max_depth)
        gb = lambda mib: float(mib * MIB / GB)
        floor_mib = memory["allocated"] + memory["context"]
        out = {
            "gpu": row["gpu"],
            "config": {k: row[k] for k in ("height", "width", "batch", "steps", "precision",
                                           "attention", "compile", "offload", "cfg",
                                           "caption_tokens")},
            "latency_s": latency,
            "denoise_step_s": step,
            "latency_interval_s": [total * float(np.exp(llo)), total * float(np.exp(lhi))],
            "peak_memory_gb": gb(memory["nvml"]),
            "torch_peak_allocated_gb": gb(memory["allocated"]),
            "torch_allocated_interval_gb": [gb(memory["allocated"] * np.exp(alo)),
                                            gb(memory["allocated"] * np.exp(ahi))],
            "memory_interval_gb": [gb(max(memory["nvml"] * np.exp(mlo), floor_mib)),
                                   gb(min(memory["nvml"] * np.exp(mhi),
                                          max(row["capacity_mib"], memory["nvml"])))],
            "memory_capped": bool(memory["nvml"] < memory["nvml_free"]),
            "source": "fitted" if row["gpu"] in self.probed else "transferred",
            "source_detail": self._source_detail(row),
            "interval_basis": {"latency": latency_basis, "memory": memory_basis},
            "model_version": self.model_version,
        }
        measured = self.measured.get(match_key(row))
        if measured:
            out.update(measured)
            out["interval_basis"] = {
                "latency": "min and max over the measured repeats",
                "memory": "the measured peak (one figure per run)"}
        # What the run needs: allocated (upper bound when predicted) + context + fragments.
        allocated_mib = out["torch_peak_allocated_gb"] * GB / MIB
        upper = allocated_mib * (1.0 if measured else float(np.exp(ahi)))
        resident = memory["allocated"] - memory["activations"]
        needed = (upper + memory["context"]
                  + self.memory.fragmentation * max(allocated_mib - resident, 0.0))
        return self._finish(out, row, spec, gb(needed), gb(memory["context"]))

    def _source_detail(self, row: dict) -> str:
        c = self.calibration
        err = (f"K-fold latency MAPE {c['latency_mape']:.1f}%, torch-allocated memory MAPE "
               f"{c['memory_mape']:.1f}%" if c.get("latency_mape") is not None
               else "no cross-validation (too few records)")
        if row["gpu"] in self.probed:
            return f"fitted roofline/memory model on {row['gpu']} measurements ({err})"
        probed = ", ".join(sorted(self.probed))
        return (f"transferred from {probed} via catalog specs of {row['gpu']} "
                f"(dense {row['precision']} TFLOPS, memory bandwidth; {err} on probed GPUs)")

    def _finish(self, out: dict, row: dict, spec: GpuSpec, needed_gb: float,
                context_gb: float) -> dict:
        """Throughput, MFU and the memory verdict, from the (fitted or measured) figures."""
        total, step = out["latency_s"]["total"], out["denoise_step_s"]
        out["images_per_s"] = row["batch"] / total
        costs = shape_costs(row["height"], row["width"], row["caption_tokens"])
        images = row["batch"] * (2 if row["cfg"] else 1)
        out["achieved_tflops"] = images * costs["forward_tflops"] / step
        out["mfu"] = out["achieved_tflops"] / row["tflops"]
        self._power(out, row)
        capacity = row["capacity_mib"] * MIB / GB
        out["memory_capacity_gb"] = capacity
        out["memory_capacity_source"] = (
            "NVML total memory of the probed GPU" if row["gpu"] in self.probed
            else f"catalog memory_gb of {spec.id} (decimal GB as marketed)")
        margin = max(MIN_MEMORY_MARGIN_GB, needed_gb - out["torch_peak_allocated_gb"])
        out["memory_needed_gb"] = out["torch_peak_allocated_gb"] + margin
        out["memory_margin_gb"] = margin
        bound = "" if out["source"] == "measured" else f" (upper {INTERVAL_COVERAGE:.0%} bound)"
        out["memory_margin_rule"] = (
            f"needed = torch peak allocated{bound}"
            f" + CUDA context ({context_gb:.2f} GB) + {self.memory.fragmentation:.2f} x activations"
            f" for allocator fragments ({self.memory.fragmentation_basis}), at least "
            f"{MIN_MEMORY_MARGIN_GB:g} GB above allocated; the NVML peak is not the basis: the "
            "caching allocator keeps fragments while memory is free and releases them under "
            "pressure")
        out["memory_headroom_gb"] = capacity - out["memory_needed_gb"]
        oom = self._oom_below(row)
        if oom:
            out["fits"] = False
            out["fits_reason"] = f"measured out of memory at {oom} on this GPU and setting"
        elif out["source"] == "measured":
            out["fits"] = True
            out["fits_reason"] = "measured: this config ran"
        else:
            out["fits"] = bool(out["memory_needed_gb"] <= capacity)
            verb = "within" if out["fits"] else "over"
            out["fits_reason"] = (f"needs {out['memory_needed_gb']:.1f} GB (torch allocated "
                                  f"{out['torch_peak_allocated_gb']:.1f} GB + {margin:.1f} GB "
                                  f"margin), {verb} {capacity:.1f} GB")
        return out

    def _power(self, out: dict, row: dict) -> None:
        """Board power while denoising: measured for a measured config, else the most any
        record of this GPU drew, else None (the catalog TDP is the caller's fallback); energy
        per image measured, else that power over the predicted run."""
        if out["source"] == "measured" and out.get("power_w") is not None:
            out["power_source"] = f"measured ({out['source_detail']})"
        elif row["gpu"] in self.power:
            watts, n = self.power[row["gpu"]]
            out["power_w"] = watts
            out["power_source"] = f"max measured power_w over {n} records of {row['gpu']}"
        else:
            out["power_w"], out["power_source"] = None, None
        if out.get("energy_j_per_image") is None and out["power_w"] is not None:
            out["energy_j_per_image"] = out["power_w"] * out["latency_s"]["total"] / row["batch"]
        out.setdefault("energy_j_per_image", None)

    def _oom_below(self, row: dict) -> str | None:
        """A measured OOM on this GPU and setting at no more work than this config, if any."""
        for size, where in self.ooms.get(setting_key(row), ()):
            if oom_size(row) >= size:
                return where
        return None

    # ------------------------------------------------------------------------------ report

    @property
    def validation(self) -> dict:
        """The validation report (`advisor validate`), computed on first use and cached."""
        if self._validation is None:
            from advisor.fit import save_cache
            from advisor.validation import validation_report

            self._validation = validation_report(self.records, self.specs, self.problems)
            if self.cache_path:
                save_cache(self, self.cache_path)
        return self._validation


def match_key(row: dict) -> tuple:
    """Identity of a config on a GPU, for exact measured matches."""
    return tuple(row[k] for k in ("gpu", "height", "width", "batch", "steps", "precision",
                                  "attention", "compile", "offload", "cfg", "caption_tokens"))


def setting_key(row: dict) -> tuple:
    return tuple(row[k] for k in ("gpu", "precision", "attention", "compile", "offload"))


def oom_size(row: dict) -> int:
    """Work that sets activation memory: pixels x images in the transformer batch (CFG doubles
    it). A measured OOM at some size means an OOM at any larger one on that GPU and setting."""
    return row["height"] * row["width"] * row["batch"] * (2 if row["cfg"] else 1)
