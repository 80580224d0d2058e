"""Fitted latency and memory predictors: plain numpy objects, what the model cache holds.

The scikit-learn estimators in advisor.estimators fit these; keeping them free of scikit-learn
and scipy lets `advisor predict` load the cache and answer in a fraction of a second.
"""
from __future__ import annotations

import numpy as np

from advisor.contract import QUANTIZATIONS
from advisor.features import (
    LATENCY_FEATURES, LATENCY_STAGES, MEMORY_STAGES, latency_design, memory_design, memory_key,
    nvml_design,
)
from advisor.grouped import GroupedLinear


COMPUTE_FAMILY = "compute"


def floor_family(row: dict) -> str:
    """The settings that share a denoise step's floor (the host's time to issue its kernels):
    the compute precisions one (measured 0.048-0.056 s at 512x512 batch 1 on the H200, eager or
    compiled); each quantized precision eager and compiled its own (torchao's weights are
    tensor subclasses that dispatch in Python in eager mode: fp8 takes 0.159 s a step at
    512x512 batch 1 eager, 0.040 s compiled)."""
    precision = row["precision"]
    if precision not in QUANTIZATIONS:
        return COMPUTE_FAMILY
    return f"{precision} {'compiled' if row['compile'] else 'eager'}"


class LatencyPredictor:
    """Seconds per stage for one batch: text encode, one denoise step, VAE decode.

    `floors` (stage -> {floor_family: seconds}) bounds a stage below: the host's time to issue
    one denoise step's kernels, which the GPU's work hides unless the step is small (the host
    runs ahead of the GPU, so a step takes the larger of the two, not their sum)."""

    def __init__(self, tables: dict[str, GroupedLinear], floors: dict[str, dict] | None = None):
        self.tables = tables
        self.floors = dict(floors or {})

    @staticmethod
    def floor(floors: dict[str, float], rows: list[dict]) -> np.ndarray:
        """Each row's floor among `floors` ({family: seconds}): its family's, else the compute
        precisions' (-inf without either)."""
        default = floors.get(COMPUTE_FAMILY, -np.inf)
        return np.array([floors.get(floor_family(r), default) for r in rows], dtype=float)

    def predict(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(times (n, 5) in LATENCY_STAGES order, depth (n, 5) of the level each came from)."""
        out = [self.tables[s].predict(latency_design(rows, s), rows) for s in LATENCY_STAGES]
        times = [np.maximum(t, self.floor(self.floors.get(s, {}), rows)) for s, (t, _) in
                 zip(LATENCY_STAGES, out)]
        return np.column_stack(times), np.column_stack([d for _, d in out])

    def terms(self, rows: list[dict], stage: str) -> np.ndarray:
        """Seconds of each term of a stage's fitted time (n, LATENCY_FEATURES[stage]), before
        its floor."""
        coefs = np.array([self.tables[stage].lookup(r)[0] for r in rows])
        return latency_design(rows, stage) * coefs.reshape(len(rows), -1)

    @staticmethod
    def compose(times: np.ndarray, steps: np.ndarray) -> dict[str, np.ndarray]:
        """A run of `steps` steps from stage times (n, 5): the figures of `latency_s`."""
        stage = dict(zip(LATENCY_STAGES, times.T))
        denoise = stage["first_step_extra"] + steps * stage["denoise_step"]
        return {"text_encode": stage["text_encode"], "denoise": denoise,
                "vae_decode": stage["vae_decode"], "other": stage["other"],
                "total": stage["text_encode"] + denoise + stage["vae_decode"] + stage["other"]}

    def efficiencies(self, row: dict) -> dict:
        """Fitted coefficients for a row's group, as {stage: {feature: value}}; for a roofline
        term the coefficient is 1 / efficiency."""
        out = {s: dict(zip(LATENCY_FEATURES[s], self.tables[s].lookup(row)[0].tolist()))
               for s in LATENCY_STAGES}
        for stage, floors in self.floors.items():
            floor = float(self.floor(floors, [row])[0])
            if floor > -np.inf:
                out[stage]["floor_s"] = floor
        return out


class MemoryPredictor:
    """Peak MiB. Torch allocated: max over stages of max(floor, resident weights + workspace +
    activations). NVML used: placement weights + fitted context and allocator reserve, at least
    allocated + context, at most the GPU's capacity less the headroom measured under pressure
    (the caching allocator releases its fragments when memory runs out, so the NVML figure of
    a large config depends on the GPU's size). What a run needs, the basis of `fits`, is
    allocated (its upper bound) + context + `fragmentation` x activations
    (advisor.models.Models)."""

    def __init__(self, stage_tables: dict[str, GroupedLinear], nvml_table: GroupedLinear,
                 context_mib: dict[str, float], headroom: float, fragmentation: float,
                 fragmentation_basis: str):
        self.stage_tables = stage_tables
        self.nvml_table = nvml_table
        self.context_mib = context_mib  # GPU id -> NVML used beyond torch reserved; "*": pooled
        self.headroom = headroom  # fraction of capacity NVML stays below under pressure
        self.fragmentation = fragmentation
        self.fragmentation_basis = fragmentation_basis

    def predict_stages(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(peak allocated MiB per stage (n, 3) in MEMORY_STAGES order, resident weights
        (n, 3), depth (n, 3))."""
        peaks, residents, depths = [], [], []
        for stage in MEMORY_STAGES:
            X, resident, floor = memory_design(rows, stage)
            extra, depth = self.stage_tables[stage].predict(X, rows)
            peaks.append(np.maximum(floor, resident + extra))
            residents.append(resident)
            depths.append(depth)
        return np.column_stack(peaks), np.column_stack(residents), np.column_stack(depths)

    def context(self, rows: list[dict]) -> np.ndarray:
        pooled = self.context_mib.get("*", 0.0)
        return np.array([self.context_mib.get(r["gpu"], pooled) for r in rows], dtype=float)

    def predict(self, rows: list[dict]) -> dict[str, np.ndarray]:
        """Per row, MiB: `allocated` (torch peak), `nvml` (peak used), `nvml_free` (before the
        capacity cap), `activations` (allocated less resident weights), `context`,
        and `depth` of the dominant stage's level."""
        stages, residents, depths = self.predict_stages(rows)
        index, dominant = np.arange(len(rows)), np.argmax(stages, axis=1)
        allocated = stages[index, dominant]
        activations = allocated - residents[index, dominant]
        context = self.context(rows)
        X, placement = nvml_design(stages - residents, rows)
        free = np.maximum(placement + self.nvml_table.predict(X, rows)[0], allocated + context)
        capacity = np.array([r["capacity_mib"] for r in rows], dtype=float)
        nvml = np.maximum(np.minimum(free, capacity * (1 - self.headroom)), allocated + context)
        return {"allocated": allocated, "nvml": nvml, "nvml_free": free, "context": context,
                "activations": activations, "depth": depths[index, dominant]}


def cap_family(row: dict) -> str:
    """The searches whose offsets a row's minimum cap takes: the compute precisions', or the
    quantized precisions' (measured 0.26-1.31 GiB above their uncapped peak, about 0.6 GiB more
    than bf16's at the same config)."""
    return "quantized" if row["precision"] in QUANTIZATIONS else COMPUTE_FAMILY


class MinCapPredictor:
    """The smallest cap on torch's allocator (MiB) under which a config runs: what a card must
    offer beyond its CUDA context. Measured for the configs a min-cap search probed (any GPU:
    it is a property of shapes, dtypes and software, like the allocated peak), else the
    predicted uncapped peak allocated plus a fitted offset (under a cap the allocator frees its
    cached blocks and retries, and cuDNN picks leaner algorithms, so a run needs about its
    uncapped peak, not more). `offsets` per cap_family: (median offset MiB, (lo, hi) MiB span of
    the searches' misses around it, searches); a family without searches takes the compute
    precisions' (or the only family's)."""

    def __init__(self, offsets: dict[str, tuple[float, tuple[float, float], int]],
                 measured: dict):
        self.offsets = offsets
        self.measured = measured  # key -> (min cap MiB, "<file:line>")

    @classmethod
    def fit(cls, caps_mib: np.ndarray, allocated_mib: np.ndarray, rows: list[dict],
            measured: dict) -> "MinCapPredictor":
        """Offsets of the measured minimum caps above the predicted uncapped peaks, per family:
        the median and the span of the misses around it."""
        offsets = np.asarray(caps_mib, dtype=float) - np.asarray(allocated_mib, dtype=float)
        families = np.array([cap_family(r) for r in rows], dtype=object)
        fitted = {}
        for family in dict.fromkeys(families):
            mine = offsets[families == family]
            median = float(np.median(mine))
            fitted[family] = (median, (float(mine.min() - median), float(mine.max() - median)),
                              len(mine))
        return cls(fitted, measured)

    def family(self, row: dict) -> str:
        """The family whose offset answers for `row`."""
        family = cap_family(row)
        if family in self.offsets:
            return family
        return COMPUTE_FAMILY if COMPUTE_FAMILY in self.offsets else next(iter(self.offsets))

    def predict(self, allocated_mib: np.ndarray, rows: list[dict]) -> tuple[np.ndarray,
                                                                             np.ndarray, list]:
        """(point, upper bound, the measurement each came from or None) per row."""
        offsets = [self.offsets[self.family(r)] for r in rows]
        point = np.asarray(allocated_mib, dtype=float) + [o[0] for o in offsets]
        upper = point + [o[1][1] for o in offsets]
        found = [self.measured.get(memory_key(r)) for r in rows]
        for i, m in enumerate(found):
            if m is not None:
                point[i] = upper[i] = m[0]
        return point, upper, [m and m[1] for m in found]
