"""scikit-learn estimators for stage latency and peak memory.

X is a list of query rows (advisor.features.make_row): configs plus GPU specs, the way text
vectorizers take a list of strings. Each estimator fits a numpy-only predictor
(advisor.predictors), exposed as `predictor_`, which is what the model cache stores.

Coefficients are fitted at three nested levels (advisor.grouped): all rows, each setting group
(the settings that change a stage's kernels), and that group on one GPU. A GPU that was never
probed uses the setting level: its specs carry the efficiencies over.
"""
from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from advisor.contract import dtype_of
from advisor.features import (
    LATENCY_FEATURES, LATENCY_STAGES, MEMORY_FEATURES, MEMORY_STAGES, NVML_FEATURES,
    TEXT_ENCODER_KEYS, TRANSFORMER_KEYS, VAE_KEYS, latency_design, memory_design, nvml_design,
    shape_config,
)
from advisor.grouped import GroupedLinear, fit_grouped_linear
from advisor.predictors import COMPUTE_FAMILY, LatencyPredictor, MemoryPredictor, floor_family

# Settings that change a stage's kernels: attention backend, compile and its mode only touch the
# transformer; the VAE's compile (in the compile mode) and memory format only the VAE decode;
# precision and offload touch every stage, but a quantized precision leaves the VAE and the
# host's post-processing in bf16 (a row's `dtype`), so those share bf16's groups, and the text
# encoder runs at its own precision (`te_precision`: its dtype outside the quantization scope).
STAGE_SETTINGS = {
    "text_encode": TEXT_ENCODER_KEYS + ("offload",),
    "denoise_step": TRANSFORMER_KEYS,
    "first_step_extra": TRANSFORMER_KEYS,
    "vae_decode": ("dtype", "offload") + VAE_KEYS,
    "other": ("dtype", "offload"),
    "denoise": TRANSFORMER_KEYS,  # memory
}
# A group is pulled toward its twin's coefficients, not toward the pooled ones, until its own
# rows say otherwise: a compile mode toward inductor's default mode, a quantized precision
# toward its bf16 twin (contract.dtype_of: the same attention, VAE and activations; matmuls at
# the same efficiency of their peak), a compiled or channels-last VAE toward the plain one.
# A setting group never measured takes its default's coefficients (SETTING_DEFAULTS, in turn)
# before it would back off to the pooled ones.
SETTING_DEFAULTS = (("compile_mode", "default"), ("vae_mode", "eager"),
                    ("vae_channels_last", False))
TWIN = (("compile_mode", lambda mode: "default"), ("precision", dtype_of),
        ("te_precision", dtype_of), ("vae_mode", lambda mode: "eager"),
        ("vae_channels_last", lambda channels_last: False))
# Stages that are a small remainder of a run (may even measure slightly negative): fitted on
# error relative to the run's total rather than to themselves.
REMAINDER_STAGES = ("first_step_extra", "other")

# Root prior of the latency coefficients, in LATENCY_FEATURES order: typical sustained
# fractions of peak on current datacenter GPUs (large GEMMs ~60%, attention kernels ~40%,
# convolutions ~40%, streaming HBM ~80%), host copies at the PCIe estimate, ~10 s per gigapixel
# of host post-processing. Its weight in pseudo-rows is `prior_strength`, but overheads are
# left to the data (weight 0) and HBM time gets `hbm_prior_weight` (LatencyRegressor).
LATENCY_PRIOR = {
    "text_encode": [0.0, 1 / 0.6, 1 / 0.8, 1.0],
    "denoise_step": [0.0, 1 / 0.6, 1 / 0.4, 1 / 0.8, 1.0, 0.0],
    "first_step_extra": [0.0, 1.0],
    "vae_decode": [0.0, 1 / 0.4, 1 / 0.8, 1.0],
    "other": [0.0, 10.0, 1.0],
}
# Stages bounded below by a floor: one denoise step cannot take less than the host's time to
# issue its kernels (measured: ~0.05 s a step at 512x512 batch 1 with or without compile, where
# the GPU's own work takes 0.02-0.04 s), one floor per family of settings (floor_family).
FLOOR_STAGES = ("denoise_step",)
# Memory coefficients that may be negative: the batch-1 convolution workspace differs from a
# larger batch's either way (measured: more per pixel at bf16, less at fp32). The peak never
# falls below the resident weights (MemoryPredictor bounds it).
MEMORY_FREE = {"vae_decode": (MEMORY_FEATURES["vae_decode"].index("batch1_pixels"),)}


def _fit_floored(fit, design: np.ndarray, y: np.ndarray, X: list[dict], window: float,
                 gap: float, evidence_rows: int):
    """(table, floors): a stage time max(floor of the row's family (predictors.floor_family),
    linear terms). Every measured time is at least its family's floor, so a family's floor is
    its least measured time where the data show one: at least `evidence_rows` rows of the
    family within `window` of it that the linear terms, fitted on the rows near no floor, put
    `gap` or more below their measured time (a small shape whose step does not shrink with the
    work). Those rows are left out of the linear fit: the floor is what was measured there, so
    they say nothing about the linear terms. A family without such evidence takes the compute
    precisions' floor (the host's time for a plain step: LatencyPredictor.floor), or its own
    least time where that is less."""
    families = np.array([floor_family(r) for r in X], dtype=object)
    least = {f: float(np.min(y[families == f])) for f in dict.fromkeys(families)}
    near = y <= np.array([least[f] for f in families]) * (1 + window)
    rest = np.flatnonzero(~near)
    if len(rest) == 0:
        return fit(np.arange(len(y))), {}
    below = near & (fit(rest).predict(design, X)[0] < (1 - gap) * y)
    floors = {f: floor for f, floor in least.items()
              if (below & (families == f)).sum() >= evidence_rows}
    evidence = below & np.isin(families, list(floors))
    if COMPUTE_FAMILY in floors:
        floors |= {f: floor for f, floor in least.items() if floor < floors[COMPUTE_FAMILY]}
    return fit(np.flatnonzero(~evidence)), floors


def _root_strength(stage: str, prior_strength: float, hbm_weight: float) -> np.ndarray:
    names = LATENCY_FEATURES[stage]
    strength = np.full(len(names), prior_strength)
    strength[names.index("overhead")] = 0.0
    if "hbm" in names:
        strength[names.index("hbm")] = hbm_weight
    return strength


def stage_levels(stage: str, per_gpu: bool) -> tuple[tuple[str, ...], ...]:
    settings = STAGE_SETTINGS[stage]
    return ((), settings, settings + ("gpu",)) if per_gpu else ((), settings)


class LatencyRegressor(RegressorMixin, BaseEstimator):
    """Roofline-style stage latency: overhead + sum over terms of (work / peak) x 1/efficiency.

    fit(X, y): y is (n, 5) seconds per batch in LATENCY_STAGES order (text_encode,
    denoise_step, first_step_extra, vae_decode, other); predict(X) returns the same shape.

    Parameters
    ----------
    prior_strength : pull of sparse groups toward the pooled fit, in pseudo-rows.
    per_gpu : add the GPU-specific level (off: every GPU uses the setting level).
    hbm_prior_weight : weight (pseudo-rows) of the HBM-time prior. On one GPU HBM time grows
        with the shape exactly as compute time does, so only GPUs with other bandwidth-to-compute
        ratios can tell them apart; until then the byte-count physics decides.
    floor_window, floor_gap, floor_evidence : the evidence a denoise-step floor needs: at least
        `floor_evidence` rows within `floor_window` (relative) above the least time
        (launch-bound steps vary: 0.050-0.064 s at 512x512 batch 1 on the H200) that the
        linear terms put `floor_gap` or more below their measured time.
    robust_rounds, robust_scale : refits with Huber weights on relative error: a row off its
        fit by more than `robust_scale` (several times the 1-3% run-to-run spread of a settled
        timing) counts as if it were off by that much, so a warm-up left in a record no longer
        drags its setting group (and its neighbours' predictions) with it.
    host_bound_weight : weight of a host-bound row (contract.HOST_BOUND_PIXELS) against a
        compute-bound one: inverse-variance weighting, since the host, not the GPU, sets a
        host-bound config's time and it varies from machine to machine. Default (1.9 / 14.8)^2:
        the mean miss of one H200 machine's median against the others', compute-bound vs
        host-bound (advisor validate, machine spread, 2026-12-02).
    """

    _parameter_constraints = {
        "prior_strength": [Interval(Real, 0, None, closed="neither")],
        "per_gpu": ["boolean"],
        "hbm_prior_weight": [Interval(Real, 0, None, closed="left")],
        "floor_window": [Interval(Real, 0, None, closed="left")],
        "floor_gap": [Interval(Real, 0, 1, closed="left")],
        "floor_evidence": [Interval(Integral, 1, None, closed="left")],
        "robust_rounds": [Interval(Integral, 0, None, closed="left")],
        "robust_scale": [Interval(Real, 0, None, closed="neither")],
        "host_bound_weight": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(self, *, prior_strength: float = 1.0, per_gpu: bool = True,
                 hbm_prior_weight: float = 30.0, floor_window: float = 0.35,
                 floor_gap: float = 0.1, floor_evidence: int = 2, robust_rounds: int = 2,
                 robust_scale: float = 0.05, host_bound_weight: float = (1.9 / 14.8) ** 2):
        self.prior_strength = prior_strength
        self.per_gpu = per_gpu
        self.hbm_prior_weight = hbm_prior_weight
        self.floor_window = floor_window
        self.floor_gap = floor_gap
        self.floor_evidence = floor_evidence
        self.robust_rounds = robust_rounds
        self.robust_scale = robust_scale
        self.host_bound_weight = host_bound_weight

    def fit(self, X: list[dict], y) -> "LatencyRegressor":
        self._validate_params()
        y = _check_targets(X, y, len(LATENCY_STAGES),
                           positive=[s not in REMAINDER_STAGES for s in LATENCY_STAGES])
        steps = np.array([r["steps"] for r in X], dtype=float)
        total = LatencyPredictor.compose(y, steps)["total"]
        regime_weight = np.array([self.host_bound_weight
                                  if shape_config(r).regime() == "host_bound" else 1.0
                                  for r in X])
        tables, floors = {}, {}
        for j, stage in enumerate(LATENCY_STAGES):
            scale = total if stage in REMAINDER_STAGES else y[:, j]
            trust = np.ones(len(X))
            design = latency_design(X, stage)
            strength = _root_strength(stage, self.prior_strength, self.hbm_prior_weight)
            for _ in range(1 + self.robust_rounds):
                fit = lambda use: fit_grouped_linear(
                    design[use], y[use, j], [X[i] for i in use],
                    stage_levels(stage, self.per_gpu), self.prior_strength,
                    root_prior=np.array(LATENCY_PRIOR[stage]), root_strength=strength,
                    weights=regime_weight[use] * trust[use] / scale[use], twin=TWIN,
                    defaults=SETTING_DEFAULTS)
                if stage in FLOOR_STAGES:
                    tables[stage], floors[stage] = _fit_floored(
                        fit, design, y[:, j], X, self.floor_window, self.floor_gap,
                        self.floor_evidence)
                else:
                    tables[stage] = fit(np.arange(len(X)))
                predicted = np.maximum(tables[stage].predict(design, X)[0],
                                       LatencyPredictor.floor(floors.get(stage, {}), X))
                residual = np.abs(y[:, j] - predicted) / scale
                trust = np.minimum(1.0, self.robust_scale / np.maximum(residual, 1e-12))
        self.predictor_ = LatencyPredictor(tables, floors)
        return self

    def predict(self, X: list[dict]) -> np.ndarray:
        check_is_fitted(self)
        return self.predictor_.predict(X)[0]


class MemoryRegressor(RegressorMixin, BaseEstimator):
    """Peak memory: per stage, resident weights (known from offload and precision) + fitted
    workspace + fitted bytes per activation element, all >= 0; the run's peak is the largest
    stage. NVML used: placement weights + fitted context and allocator reserve
    (advisor.predictors.MemoryPredictor).

    fit(X, y, stage_peaks=None, reserved=None): y is (n, 2) MiB, torch peak allocated and NVML
    peak used; stage_peaks (n, 3), NaN where unknown, is each stage's torch peak (records'
    `stage_memory`); reserved (n,), NaN where unknown, torch's peak reserved. A record without
    stage peaks counts toward the stage that currently predicts its peak (re-assigned for
    `iterations` rounds). A record whose NVML peak exceeds its reserved peak by more than
    `pressure_mib` ran under memory pressure (the allocator had to release fragments): it sets
    the capacity headroom and the fragmentation a run needs, not the free-running NVML model.
    predict(X) returns (n, 2): allocated and NVML used.
    """

    _parameter_constraints = {
        "prior_strength": [Interval(Real, 0, None, closed="neither")],
        "per_gpu": ["boolean"],
        "iterations": [Interval(Integral, 1, None, closed="left")],
        "pressure_mib": [Interval(Real, 0, None, closed="left")],
        "pressure_fraction": [Interval(Real, 0, 1, closed="right")],
        "default_fragmentation": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, *, prior_strength: float = 1.0, per_gpu: bool = True,
                 iterations: int = 4, pressure_mib: float = 2048.0,
                 pressure_fraction: float = 0.95, default_fragmentation: float = 0.5):
        self.prior_strength = prior_strength
        self.per_gpu = per_gpu
        self.iterations = iterations
        self.pressure_mib = pressure_mib
        self.pressure_fraction = pressure_fraction
        self.default_fragmentation = default_fragmentation

    def fit(self, X: list[dict], y, stage_peaks=None, reserved=None) -> "MemoryRegressor":
        self._validate_params()
        y = _check_targets(X, y, 2)
        allocated, nvml = y[:, 0], y[:, 1]
        known = (np.full((len(X), len(MEMORY_STAGES)), np.nan) if stage_peaks is None
                 else np.asarray(stage_peaks, dtype=float).reshape(len(X), len(MEMORY_STAGES)))
        reserved = (np.full(len(X), np.nan) if reserved is None
                    else np.asarray(reserved, dtype=float).reshape(len(X)))
        partial = np.isnan(known).any(axis=1)
        dominant = np.full(len(X), MEMORY_STAGES.index("denoise"))
        designs = {s: memory_design(X, s) for s in MEMORY_STAGES}
        for _ in range(self.iterations if partial.any() else 1):
            tables = {}
            for j, stage in enumerate(MEMORY_STAGES):
                target = np.where(np.isnan(known[:, j]), allocated, known[:, j])
                use = ~np.isnan(known[:, j]) | (partial & (dominant == j))
                tables[stage] = self._fit_stage(stage, designs[stage], target, X, use)
            predictor = MemoryPredictor(tables, _zero_table(), {}, 0.0, 0.0, "")
            stages, residents, _ = predictor.predict_stages(X)
            dominant = np.argmax(stages, axis=1)
        capacity = np.array([r["capacity_mib"] for r in X], dtype=float)
        # False where reserved is unknown
        pressured = ((nvml - reserved > self.pressure_mib)
                     | (nvml > self.pressure_fraction * capacity))
        context = _context(X, nvml - reserved, ~pressured & ~np.isnan(reserved))
        free = ~pressured
        if free.any():
            index = np.flatnonzero(free)
            features, placement = nvml_design((stages - residents)[index],
                                              [X[i] for i in index])
            levels = ((), ("precision", "offload"))
            levels += (levels[-1] + ("gpu",),) if self.per_gpu else ()
            nvml_table = fit_grouped_linear(features, nvml[index], [X[i] for i in index],
                                            levels, self.prior_strength, offset=placement,
                                            twin=TWIN,
                                            defaults=SETTING_DEFAULTS)
        else:
            nvml_table = _zero_table()
        headroom = (float(np.median(1 - nvml[pressured] / capacity[pressured]))
                    if pressured.any() else 0.0)
        activations = allocated - residents[np.arange(len(X)), dominant]
        frag_rows = pressured & (activations > 0)
        if frag_rows.any():
            fragmentation = float(np.median(
                (reserved[frag_rows] - allocated[frag_rows]) / activations[frag_rows]))
            basis = (f"torch reserved beyond allocated under memory pressure, median of "
                     f"{int(frag_rows.sum())} measured configs")
        else:
            fragmentation = self.default_fragmentation
            basis = "assumed: no config was measured under memory pressure"
        self.predictor_ = MemoryPredictor(tables, nvml_table, context, headroom,
                                          max(fragmentation, 0.0), basis)
        return self

    def _fit_stage(self, stage, design, target, X, use) -> GroupedLinear:
        features, resident, floor = design
        levels = stage_levels(stage, self.per_gpu)
        # A peak at the floor (model offload's hand-over) says nothing about activations.
        use = use & ~((floor > resident) & (target <= floor * 1.01))
        if not use.any():  # no observation of this stage: weights only, never the peak
            return GroupedLinear(levels[:1], [{(): np.zeros(features.shape[1])}])
        index = np.flatnonzero(use)
        return fit_grouped_linear(features[index], target[index], [X[i] for i in index], levels,
                                  self.prior_strength, offset=resident[index],
                                  free=MEMORY_FREE.get(stage, ()), twin=TWIN,
                                  defaults=SETTING_DEFAULTS)

    def predict(self, X: list[dict]) -> np.ndarray:
        check_is_fitted(self)
        out = self.predictor_.predict(X)
        return np.column_stack([out["allocated"], out["nvml"]])


def _zero_table() -> GroupedLinear:
    return GroupedLinear(((),), [{(): np.zeros(len(NVML_FEATURES))}])


def _context(X: list[dict], beyond_reserved: np.ndarray, use: np.ndarray) -> dict[str, float]:
    """NVML used beyond torch's reserved peak (CUDA context, library workspaces), MiB: median
    per GPU and pooled ("*"); empty when no record has both figures."""
    out: dict[str, list[float]] = {}
    for row, value, ok in zip(X, beyond_reserved, use):
        if ok:
            out.setdefault(row["gpu"], []).append(value)
    pooled = [v for values in out.values() for v in values]
    return ({gpu: float(np.median(v)) for gpu, v in out.items()}
            | ({"*": float(np.median(pooled))} if pooled else {}))


def _check_targets(X, y, width: int, positive=True) -> np.ndarray:
    """y as (n, width) floats; finite, and > 0 in the columns where `positive`."""
    y = np.asarray(y, dtype=float).reshape(len(X), width)
    if len(X) == 0:
        raise ValueError("no rows to fit")
    if not np.all(np.isfinite(y)) or np.any((y <= 0) & np.asarray(positive)):
        raise ValueError("targets must be finite (and positive for the timed stages)")
    return y
