"""Interval widths: the split-conformal bounds of out-of-fold residuals (`Intervals`), the
spread between machines of one GPU that every latency interval carries (`MachineBand`), and the
term a GPU of an architecture never probed gets from a stated prior and the published points of
its family (`ArchitectureWidth`). numpy only (the model cache holds them)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from advisor.features import GpuSpec
from advisor.records import machine_log_ratios

INTERVAL_COVERAGE = 0.90
# Extra log-width of an interval where the evidence does not reach: a setting never probed
# (pooled efficiencies), a GPU of an architecture never probed, and (with only one GPU probed,
# so no GPU-out residuals) any transfer. Assumptions, stated in each prediction.
# A setting probed at a single shape gets `shape` added for other shapes: one shape cannot tell
# how its time splits between terms that scale differently with the shape.
# `extrapolated` is per doubling beyond the probed sizes, batches and pixels in flight.
# `quantized`: a quantized precision's quantized / bf16 ratio carried from the GPU that measured
# it to another GPU (no quantized point was measured or published on the target to judge it;
# carried to another setting of the same GPU, it widens by `setting`).
EXTRA_WIDTH = {
    "latency": {"setting": 0.15, "shape": 0.10, "architecture": 0.25, "transfer": 0.10,
                "extrapolated": 0.10, "quantized": 0.25},
    "memory": {"setting": 0.15, "shape": 0.05, "architecture": 0.10, "transfer": 0.03,
               "extrapolated": 0.05},
    "allocated": {"setting": 0.15, "shape": 0.02, "architecture": 0.05, "transfer": 0.02,
                  "extrapolated": 0.03},
}
INTERVAL_KINDS = tuple(EXTRA_WIDTH)


@dataclass
class Intervals:
    """Log-ratio bounds (measured / predicted) at INTERVAL_COVERAGE, per kind of prediction.

    `fitted` comes from K-fold residuals on the probed GPUs, `transferred` from leave-one-GPU-out
    residuals (None when only one GPU was probed); `quantized` from the K-fold residuals of the
    quantized precisions' runs, for their fitted predictions (None without: they take
    `fitted`), which `fitted` leaves out. `host_bound`: the fitted and transferred bounds from
    the host-bound configs' residuals only (contract.Config.regime), for host-bound predictions;
    the others are then the compute-bound configs' (`quantized` stays pooled over both: too few
    runs to split). Machines of one GPU differ most where the host sets the
    pace, so one pooled width would be too narrow there and too wide elsewhere."""

    fitted: tuple[float, float]
    transferred: tuple[float, float] | None
    n_fitted: int = 0
    n_transferred: int = 0
    quantized: tuple[float, float] | None = None
    n_quantized: int = 0
    host_bound: "Intervals | None" = None


PLACEHOLDER_INTERVALS = Intervals((-0.1, 0.1), None)


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


@dataclass(frozen=True)
class MachineBand:
    """How far another machine of the same GPU lands, per regime: conformal log bounds of
    log(one machine's median total / the other machines' median) over the configs measured on
    two machines or more (records.machine_log_ratios). Every latency interval carries it: a
    figure measured or fitted on some machines is a figure of those machines."""

    regime: str
    bounds: tuple[float, float]
    n: int  # machine medians it rests on

    def widen(self, lo: float, hi: float) -> tuple[float, float]:
        """Bounds of a prediction's own error combined with the machine spread, as
        independent errors (in quadrature, in log space)."""
        return -math.hypot(lo, self.bounds[0]), math.hypot(hi, self.bounds[1])

    def words(self) -> str:
        lo, hi = self.bounds
        regime = self.regime.replace("_", "-")
        return (f"the spread between machines of one GPU ({regime}: {math.expm1(lo):+.0%} "
                f"to {math.expm1(hi):+.0%}, over {self.n} machine medians of configs measured "
                "on several machines)")


# The unprobed-architecture term of a latency interval before any published point: a 90%
# half-width of 25% (log), the assumption the advisor used before published points existed,
# counted as worth PRIOR_POINTS observations when published points update it.
PRIOR_HALF_WIDTH = 0.25
PRIOR_POINTS = 2
Z90 = 1.6449  # the standard normal's 95th percentile: a central 90% interval


@dataclass(frozen=True)
class ArchitectureWidth:
    """The term an interval gets for a GPU whose architecture was never probed, per family (a
    compute capability: the kernels torch picks and how well its software supports them): a
    scale of the log miss from a stated prior updated by the published points of that family
    on the stack this tool models (conjugate update of a zero-mean normal's variance:
    (PRIOR_POINTS x prior variance + sum of squared misses) / (PRIOR_POINTS + n)); the 90%
    half-width is Z90 times its square root."""

    family: str  # compute capability, e.g. "8.9"
    half_width: float  # log, 90%
    points: tuple[tuple[str, float], ...] = ()  # (published point id, log miss)

    @classmethod
    def of(cls, family: str, misses: list[tuple[str, float]]) -> "ArchitectureWidth":
        prior_var = (PRIOR_HALF_WIDTH / Z90) ** 2
        var = (PRIOR_POINTS * prior_var + sum(x * x for _, x in misses)) / (
            PRIOR_POINTS + len(misses))
        return cls(family, Z90 * math.sqrt(var), tuple(misses))

    def words(self, architecture: str) -> str:
        what = (f"+/-{self.half_width:.0%} because no {architecture} GPU was probed (its family, "
                f"compute capability {self.family}: a prior of +/-{PRIOR_HALF_WIDTH:.0%} at 90% "
                f"worth {PRIOR_POINTS} points")
        if not self.points:
            return what + "; no published diffusers point of it)"
        seen = ", ".join(f"{pid} {math.expm1(x):+.0%}" for pid, x in self.points)
        return (what + f", updated by {len(self.points)} published diffusers point(s) of it, "
                f"measured / predicted: {seen})")


def family_of(spec: GpuSpec) -> str:
    """A GPU's family for the unprobed-architecture term: its compute capability."""
    return "unknown" if spec.capability is None else "{}.{}".format(*spec.capability)


def published_families(rows: list[dict], specs: dict) -> dict[str, list[tuple[str, float]]]:
    """Published misses per family: (point id, log measured / predicted) of the rows
    (published_split.published_residuals) on unprobed architectures, by family_of their GPU."""
    out: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        if r["unprobed_architecture"]:
            out.setdefault(family_of(specs[r["gpu"]]), []).append((r["id"], r["log_ratio"]))
    return out


def machine_bands(records: list[dict]) -> dict[str, MachineBand]:
    """Per regime, the MachineBand of the records (regimes with fewer than two medians have
    none)."""
    return {regime: MachineBand(regime, bounds, len(ratios))
            for regime, ratios in machine_log_ratios(records).items()
            if (bounds := conformal_bounds(ratios, None)) is not None}


def bounds_summary(iv: Intervals) -> dict:
    listed = lambda b: list(b) if b else None
    return {"fitted": list(iv.fitted), "transferred": listed(iv.transferred),
            "quantized": listed(iv.quantized), "n_fitted": iv.n_fitted,
            "n_transferred": iv.n_transferred, "n_quantized": iv.n_quantized}
