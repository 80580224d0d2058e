"""Fitted latency and memory predictors: plain numpy objects, what the model cache holds.

The scikit-learn estimators in advisor.estimators fit these; keeping them free of scikit-learn
and scipy lets `advisor predict` load the cache and answer in a fraction of a second.
"""
from __future__ import annotations

import numpy as np

from advisor.features import (
    LATENCY_FEATURES, LATENCY_STAGES, MEMORY_STAGES, latency_design, memory_design,
)
from advisor.grouped import GroupedLinear


class LatencyPredictor:
    """Seconds per stage for one batch: text encode, one denoise step, VAE decode."""

    def __init__(self, tables: dict[str, GroupedLinear]):
        self.tables = tables

    def predict(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(times (n, 5) in LATENCY_STAGES order, depth (n, 5) of the level each came from)."""
        out = [self.tables[s].predict(latency_design(rows, s), rows) for s in LATENCY_STAGES]
        return np.column_stack([t for t, _ in out]), np.column_stack([d for _, d in out])

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
        return {s: dict(zip(LATENCY_FEATURES[s], self.tables[s].lookup(row)[0].tolist()))
                for s in LATENCY_STAGES}


class MemoryPredictor:
    """Peak MiB: torch allocated = max over stages of (resident weights + workspace +
    activations); NVML used = fitted affine map of it (CUDA context, allocator slack)."""

    def __init__(self, stage_tables: dict[str, GroupedLinear], nvml_table: GroupedLinear):
        self.stage_tables = stage_tables
        self.nvml_table = nvml_table

    def predict_stages(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(peak allocated MiB per stage (n, 3) in MEMORY_STAGES order, depth (n, 3))."""
        peaks, depths = [], []
        for stage in MEMORY_STAGES:
            X, resident = memory_design(rows, stage)
            extra, depth = self.stage_tables[stage].predict(X, rows)
            peaks.append(resident + extra)
            depths.append(depth)
        return np.column_stack(peaks), np.column_stack(depths)

    def nvml_from_allocated(self, allocated_mib: np.ndarray, rows: list[dict]) -> np.ndarray:
        X = np.column_stack([np.ones_like(allocated_mib), allocated_mib])
        return self.nvml_table.predict(X, rows)[0]

    def predict(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(torch peak allocated MiB, NVML peak used MiB, depth of the dominant stage's level)."""
        stages, depths = self.predict_stages(rows)
        dominant = np.argmax(stages, axis=1)
        index = np.arange(len(rows))
        allocated = stages[index, dominant]
        return allocated, self.nvml_from_allocated(allocated, rows), depths[index, dominant]
