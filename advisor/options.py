"""What a plan holds, as types: an option (GPU, setting, max batch) with its fleet, latency at
peak, cost and service per resolution; its point and upper-basis fleets; a GPU's verdict when it
has no option; what a lossy precision would change. Every consumer reads their attributes; each
type's `as_dict` is its one YAML/JSON form (the plan file, `recommend --format json`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from advisor.contract import Setting
from advisor.cost import FleetCost
from advisor.probing import ProbeSuggestion


@dataclass(frozen=True)
class Fleet:
    serving_gpus: int
    spare_gpus: int  # the N+1 spare, 0 or 1
    servers: int
    throughput_lower_bound_gpus: int  # serving GPUs at full batches, before queueing
    simulated: tuple[tuple[int, float], ...]  # (serving GPUs, SLO latency) of each simulation

    @property
    def total_gpus(self) -> int:
        return self.serving_gpus + self.spare_gpus

    def as_dict(self) -> dict:
        return {"serving_gpus": self.serving_gpus, "spare_gpus": self.spare_gpus,
                "total_gpus": self.total_gpus, "servers": self.servers,
                "throughput_lower_bound_gpus": self.throughput_lower_bound_gpus,
                "simulated": [list(t) for t in self.simulated]}


@dataclass(frozen=True)
class ShortTest:
    """What a load test of the fleet at peak, a few minutes long, measures of the SLO quantile:
    the 90% range over such runs (None: not simulated)."""

    requests: int
    duration_s: float
    range_s: tuple[float, float] | None

    @property
    def length(self) -> str:
        """The run's length in words: "7 min", "45 s"."""
        d = self.duration_s
        return f"{d / 60:.0f} min" if d >= 90 else f"{d:.0f} s"

    def as_dict(self) -> dict:
        return {"requests": self.requests, "duration_s": self.duration_s,
                "range_s": None if self.range_s is None else list(self.range_s)}


@dataclass(frozen=True)
class PeakLatency:
    """The queueing simulation of the fleet at peak demand."""

    p50_s: float
    p95_s: float
    p99_s: float
    mean_wait_s: float
    mean_batch: float
    utilization_at_peak: float
    short_test: ShortTest | None = None

    @classmethod
    def of(cls, result, short_test: ShortTest | None = None) -> "PeakLatency":
        """From an advisor.queueing.Result."""
        return cls(result.p50_s, result.p95_s, result.p99_s, result.mean_wait_s,
                   result.mean_batch, result.utilization, short_test)

    def at(self, key: str) -> float:
        """The latency of a request's SLO key ("p95_s" or "p99_s")."""
        return {"p50_s": self.p50_s, "p95_s": self.p95_s, "p99_s": self.p99_s}[key]

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "short_test"}
        if self.short_test is not None:
            out["short_test"] = self.short_test.as_dict()
        return out


@dataclass(frozen=True)
class ResolutionService:
    """An option's service at one resolution of the mix: batch-of-one and max-batch times with
    their 90% intervals and sources, and the memory of the max batch."""

    max_batch: int
    batch_1_s: float
    batch_1_interval_s: tuple[float, float]
    batch_1_source: str
    max_batch_s: float
    max_batch_interval_s: tuple[float, float]
    sized_on: str  # "point" or "upper": which end of the interval the fleet is sized on
    peak_memory_gb: float  # nvidia-smi's figure at the max batch
    memory_interval_gb: tuple[float, float]
    memory_needed_gb: float
    source: str  # of the max batch's figures
    source_detail: str
    endpoint_overhead_s: float  # what the serving endpoint adds to each request (overhead.py)
    endpoint_overhead_basis: str

    def as_dict(self) -> dict:
        b = self.max_batch
        return {"batch_1_s": self.batch_1_s, "batch_1_interval_s": list(self.batch_1_interval_s),
                "batch_1_source": self.batch_1_source, f"batch_{b}_s": self.max_batch_s,
                f"batch_{b}_interval_s": list(self.max_batch_interval_s),
                "sized_on": self.sized_on, "peak_memory_gb": self.peak_memory_gb,
                "memory_interval_gb": list(self.memory_interval_gb),
                "memory_needed_gb": self.memory_needed_gb, "source": self.source,
                "source_detail": self.source_detail,
                "endpoint_overhead_s": self.endpoint_overhead_s,
                "endpoint_overhead_basis": self.endpoint_overhead_basis}


@dataclass(frozen=True)
class Basis:
    """An option's fleet sized on one basis of its service times (point or upper end)."""

    serving_gpus: int | None  # None: no fleet meets the SLO on this basis
    total_gpus: int | None
    usd_per_month: float | None
    latency_s: float | None
    reason: str  # why no fleet, else ""


@dataclass(frozen=True)
class Bases:
    """For an option with transferred figures (a GPU never probed): its fleet on the point
    prediction and on the 90% interval's upper end, what probing the GPU settles (the
    difference), and the probe to run."""

    point: Basis
    upper: Basis
    ranked_on: str  # the request's latency basis
    settles_gpus: int | None
    settles_usd_per_month: float | None
    probe: ProbeSuggestion

    def as_dict(self) -> dict:
        return {"point": asdict(self.point), "upper": asdict(self.upper),
                "ranked_on": self.ranked_on,
                "probing_settles": {"gpus": self.settles_gpus,
                                    "usd_per_month": self.settles_usd_per_month},
                "probe": asdict(self.probe)}


@dataclass(frozen=True)
class Change:
    """How an option differs from the chosen one."""

    total_gpus: int
    usd_per_month: float


@dataclass(frozen=True)
class Option:
    """One GPU, setting and max batch with the fleet that meets the request, as planned."""

    gpu: str  # catalog id
    gpu_name: str
    setting: Setting
    max_batch: int
    window_s: float
    fleet: Fleet
    latency: PeakLatency
    slo_headroom: float  # 1 - SLO latency / SLO
    capacity_img_per_s: float  # the fleet's serving GPUs at full batches
    cost: FleetCost
    power_source: str
    service: dict[str, ResolutionService]  # by resolution label, in the mix's order
    sources: tuple[str, ...]  # of every figure, surest first
    evidence: str  # the least sure figure's source
    accuracy: str  # how far off that figure may be, in words
    caveats: tuple[str, ...]
    model_version: str
    rank: int | None = None  # set on the ranked options
    reason: str = ""  # why this batch and fleet (ranked options)
    near_tie: str = ""  # why it ranks above cheaper options, if it does
    bases: Bases | None = None  # transferred figures: point and upper-basis fleets
    versus_chosen: Change | None = None  # a lossy alternative: its change from the chosen one

    @property
    def key(self) -> tuple:
        """What identifies the option: GPU, setting, max batch and fleet."""
        return (self.gpu, self.setting, self.max_batch, self.fleet.serving_gpus)

    @property
    def sized_on_upper(self) -> bool:
        return any(s.sized_on == "upper" for s in self.service.values())

    def as_dict(self) -> dict:
        out = {"gpu": self.gpu, "gpu_name": self.gpu_name, "setting": self.setting.as_dict(),
               "max_batch": self.max_batch, "window_s": self.window_s,
               "fleet": self.fleet.as_dict(), "latency": self.latency.as_dict(),
               "slo_headroom": self.slo_headroom, "capacity_img_per_s": self.capacity_img_per_s,
               "cost": self.cost.as_dict(), "power_source": self.power_source,
               "service": {label: s.as_dict() for label, s in self.service.items()},
               "sources": list(self.sources), "evidence": self.evidence,
               "accuracy": self.accuracy, "caveats": list(self.caveats),
               "model_version": self.model_version}
        if self.near_tie:
            out["near_tie"] = self.near_tie
        if self.rank is not None:
            out.update(rank=self.rank, reason=self.reason)
        out["bases"] = self.bases.as_dict() if self.bases else None
        if self.versus_chosen is not None:
            out["versus_chosen"] = asdict(self.versus_chosen)
        return out


# --------------------------------------------------------------------------- without an option


@dataclass(frozen=True)
class Verdict:
    """Why a GPU has no option: it fits but no fleet meets the request ("infeasible"), nothing
    fits ("unfit"), it was not searched ("excluded"), or its cost lower bound is above the
    options listed ("not sized", with that bound)."""

    gpu: str
    reason: str
    usd_per_month_at_least: float | None = None  # "not sized" only

    def as_dict(self) -> dict:
        if self.usd_per_month_at_least is None:
            return {"gpu": self.gpu, "reason": self.reason}
        return {"gpu": self.gpu, "usd_per_month_at_least": self.usd_per_month_at_least}


# --------------------------------------------------------------------------- lossy precisions


@dataclass(frozen=True)
class LossyFit:
    """A GPU where a lossy precision fits without offload and nothing requested does."""

    gpu: str
    setting: Setting
    resolution: str  # the mix's first
    batch_1_s: float
    batch_1_interval_s: tuple[float, float]
    source: str
    max_batch: int
    latency_floor_s: float  # the SLO quantile of batch-of-one service, no queueing
    meets_slo_at_batch_1: bool

    def as_dict(self) -> dict:
        return {**asdict(self), "setting": self.setting.as_dict(),
                "batch_1_interval_s": list(self.batch_1_interval_s)}


@dataclass(frozen=True)
class LossyAlternative:
    """What allowing one lossy precision the request leaves out would change."""

    precision: str
    scheme: str
    caveat: str
    searched: tuple[str, ...]  # GPU ids
    not_offered: dict[str, str]  # GPU id -> why it cannot run the precision
    best: Option | None = None  # the cheapest option with it, when cheaper than the chosen one
    on_chosen_gpu: Option | None = None  # the cheapest with it on the chosen GPU
    fits_without_offload: tuple[LossyFit, ...] = ()
    error: str = ""  # not evaluated: why
    summary: tuple[str, ...] = ()  # the above in sentences

    def as_dict(self) -> dict:
        out = {"precision": self.precision, "scheme": self.scheme, "caveat": self.caveat,
               "best": self.best.as_dict() if self.best else None,
               "on_chosen_gpu": self.on_chosen_gpu.as_dict() if self.on_chosen_gpu else None,
               "fits_without_offload": [f.as_dict() for f in self.fits_without_offload],
               "searched": list(self.searched), "not_offered": dict(self.not_offered)}
        if self.error:
            out["error"] = self.error
        out["summary"] = list(self.summary)
        return out
