"""A planning request: what to serve, how much, how fast, on what, at what price. Validated.

Every malformed field raises AdvisorError naming the field (dotted path, e.g.
`demand.peak_factor`), the value expected and the value found. Unknown keys are errors too (a
typo must not fall back to a default silently). `examples/request.yaml` documents each field.
"""
from __future__ import annotations

import copy
import difflib
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

from advisor.contract import ATTENTIONS, COMPILE_MODES, LATENCY_BASES, OFFLOADS, PRECISIONS, \
    QUANT_SCOPES, QUANTIZATIONS, shape_label
from advisor.errors import AdvisorError, describe
from advisor.inputs import is_number, load_yaml, read_text
from advisor.price_sheet import parse_sheet
from advisor.queueing import DEFAULT_REQUESTS, DEFAULT_SEED, DEFAULT_WARMUP, Simulation
from advisor.workload import check_side

SEGMENTS = ("datacenter", "workstation", "consumer")
MODES = ("cloud", "owned")
QUANTILES = {"p95_s": 0.95, "p99_s": 0.99}
SECONDS_PER_DAY = 86_400
MAX_CAPTION_TOKENS = 512
MAX_IMAGES_PER_S = 1e6  # average demand: a million GPUs' worth, beyond any fleet max_gpus allows

DEFAULT_BATCHES = (1, 2, 4, 8, 16)
# Only bf16 unless the request lists more: the quantized precisions are lossy and image quality
# is not measured here, so none is chosen unasked (the plan says what each would change).
DEFAULT_PRECISIONS = ("bf16",)
DEFAULTS = {
    "steps": 9, "guidance_scale": 0.0, "caption_tokens": 64, "peak_factor": 1.0,
    "window_s": 0.1, "memory_margin_gb": 1.0, "latency_basis": "auto", "max_gpus": 1024,
    "gpus_per_server": 8, "pue": 1.3, "server_w": 800.0, "server_usd": 25_000.0,
    "amortization_years": 3.0, "usd_per_kwh": 0.12,
}

TOP_LEVEL = ("resolutions", "steps", "guidance_scale", "caption_tokens", "demand", "slo",
             "candidates", "settings", "batching", "memory_margin_gb", "latency_basis",
             "deployment", "prices", "constraints", "simulation")
SECTION_KEYS = {
    "demand": ("images_per_s", "images_per_day", "peak_factor"),
    "slo": tuple(QUANTILES),
    "candidates": ("gpus", "segments"),
    "settings": ("precisions", "batches", "compile", "attention", "offload", "quant_scope",
                 "compile_mode", "vae_compile", "vae_channels_last"),
    "batching": ("window_s",),
    "deployment": ("mode", "gpus_per_server", "pue", "server_w", "cloud", "owned"),
    "deployment.cloud": ("usd_per_gpu_hour",),
    "deployment.owned": ("gpu_price_usd", "server_usd", "amortization_years", "usd_per_kwh"),
    "constraints": ("max_gpus", "max_usd_per_month", "max_capex_usd", "n_plus_one"),
    "simulation": ("requests", "warmup", "seed"),
}
RESOLUTION_KEYS = ("height", "width", "share")


@dataclass(frozen=True)
class Resolution:
    height: int
    width: int
    share: float

    @cached_property  # a key of every prediction lookup: built once
    def label(self) -> str:
        return shape_label(self.height, self.width)


@dataclass(frozen=True)
class Deployment:
    mode: str = "cloud"
    gpus_per_server: int = DEFAULTS["gpus_per_server"]
    pue: float = DEFAULTS["pue"]
    server_w: float = DEFAULTS["server_w"]  # host power per server besides its GPUs
    usd_per_gpu_hour: dict = field(default_factory=dict)  # cloud price overrides, by GPU id
    gpu_price_usd: dict = field(default_factory=dict)  # purchase price overrides, by GPU id
    server_usd: float = DEFAULTS["server_usd"]
    amortization_years: float = DEFAULTS["amortization_years"]
    usd_per_kwh: float = DEFAULTS["usd_per_kwh"]


@dataclass(frozen=True)
class Request:
    resolutions: tuple[Resolution, ...]
    images_per_s: float  # average demand
    slo_quantile: float
    slo_s: float
    demand_unit: str = "images_per_s"  # how the demand was given, kept for export
    peak_factor: float = DEFAULTS["peak_factor"]
    steps: int = DEFAULTS["steps"]
    guidance_scale: float = DEFAULTS["guidance_scale"]
    caption_tokens: int = DEFAULTS["caption_tokens"]
    gpus: tuple[str, ...] | None = None  # None: every runnable catalog GPU
    segments: tuple[str, ...] | None = None
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    batches: tuple[int, ...] = DEFAULT_BATCHES
    compile: tuple[bool, ...] = (False, True)
    attention: tuple[str, ...] = ATTENTIONS
    offload: tuple[str, ...] = OFFLOADS
    # what a quantized precision quantizes, the compile modes of compiled settings, the VAE's
    # compile and memory format (advisor.contract)
    quant_scope: tuple[str, ...] = QUANT_SCOPES
    compile_mode: tuple[str, ...] = ("default",)  # the others predict as it until probed
    vae_compile: tuple[bool, ...] = (False, True)
    vae_channels_last: tuple[bool, ...] = (False, True)
    window_s: float = DEFAULTS["window_s"]
    memory_margin_gb: float = DEFAULTS["memory_margin_gb"]
    latency_basis: str = DEFAULTS["latency_basis"]  # one of LATENCY_BASES
    deployment: Deployment = Deployment()
    # the buyer's price sheet (advisor.price_sheet), by GPU id: wins over deployment's price
    # overrides and the catalog
    prices: dict = field(default_factory=dict)
    max_gpus: int = DEFAULTS["max_gpus"]
    max_usd_per_month: float | None = None
    max_capex_usd: float | None = None
    n_plus_one: bool = False
    simulation: Simulation = Simulation()
    source: str = "request"  # where it was read from, for messages

    @property
    def cfg(self) -> bool:
        """Classifier-free guidance: diffusers' ZImagePipeline runs it when guidance_scale > 0."""
        return self.guidance_scale > 0

    @property
    def peak_images_per_s(self) -> float:
        return self.images_per_s * self.peak_factor

    @property
    def slo_label(self) -> str:
        return f"p{round(self.slo_quantile * 100)}"

    @property
    def slo_key(self) -> str:
        """The SLO quantile's key in a plan option's latency figures, e.g. "p95_s"."""
        return f"{self.slo_label}_s"

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> "Request":
        """Read a request file (YAML, advisor.inputs), apply `overrides` (dotted keys),
        validate."""
        data = load_yaml(read_text(path, "request"), str(path))
        return cls.from_dict(data, source=str(path), overrides=overrides)

    @classmethod
    def from_dict(cls, data, source: str = "request", overrides: dict | None = None) -> "Request":
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise AdvisorError(f"{source}: expected a mapping of request fields, "
                               f"found {describe(data)}")
        data = apply_overrides(data, overrides or {})
        return _parse(data, Fields(source))

    def to_dict(self) -> dict:
        """The request in its file form, every default filled in (for export and re-reading)."""
        d = self.deployment
        demand = {self.demand_unit: self.images_per_s * (
            SECONDS_PER_DAY if self.demand_unit == "images_per_day" else 1)}
        return {
            "resolutions": [asdict(r) for r in self.resolutions],
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
            "caption_tokens": self.caption_tokens,
            "demand": {**demand, "peak_factor": self.peak_factor},
            "slo": {f"p{round(self.slo_quantile * 100)}_s": self.slo_s},
            "candidates": {"gpus": list(self.gpus) if self.gpus else "all",
                           **({"segments": list(self.segments)} if self.segments else {})},
            "settings": {"precisions": list(self.precisions), "batches": list(self.batches),
                         "compile": list(self.compile), "attention": list(self.attention),
                         "offload": list(self.offload), "quant_scope": list(self.quant_scope),
                         "compile_mode": list(self.compile_mode),
                         "vae_compile": list(self.vae_compile),
                         "vae_channels_last": list(self.vae_channels_last)},
            "batching": {"window_s": self.window_s},
            "memory_margin_gb": self.memory_margin_gb,
            "latency_basis": self.latency_basis,
            "deployment": {
                "mode": d.mode, "gpus_per_server": d.gpus_per_server, "pue": d.pue,
                "server_w": d.server_w,
                "cloud": {"usd_per_gpu_hour": dict(d.usd_per_gpu_hour)},
                "owned": {"gpu_price_usd": dict(d.gpu_price_usd), "server_usd": d.server_usd,
                          "amortization_years": d.amortization_years,
                          "usd_per_kwh": d.usd_per_kwh},
            },
            "prices": {g: p.to_dict() for g, p in self.prices.items()},
            "constraints": {"max_gpus": self.max_gpus,
                            "max_usd_per_month": self.max_usd_per_month,
                            "max_capex_usd": self.max_capex_usd, "n_plus_one": self.n_plus_one},
            "simulation": asdict(self.simulation),
        }

    def with_changes(self, **changes) -> "Request":
        return replace(self, **changes)

    def sized_on_upper(self, source: str) -> bool:
        """Whether a figure of this source (measured, fitted, transferred) is sized on its
        interval's upper end rather than its point."""
        return self.latency_basis == "upper" or (
            self.latency_basis == "auto" and source == "transferred")


def apply_overrides(data: dict, overrides: dict) -> dict:
    """A copy of `data` with dotted keys set ("demand.images_per_day": 1e5). Setting one way of
    giving demand or the SLO replaces the others, so a flag never conflicts with the file."""
    out = copy.deepcopy(data)
    exclusive = {"demand": ("images_per_s", "images_per_day"), "slo": tuple(QUANTILES)}
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for name in parents:
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
        group = exclusive.get(parents[0] if parents else "", ())
        if leaf in group:
            for other in group:
                node.pop(other, None)
        node[leaf] = value
    return out


# --------------------------------------------------------------------------- parsing


def _parse(data: dict, f: "Fields") -> Request:
    f.keys(data, "", TOP_LEVEL)
    demand = f.section(data, "demand", required=True)
    slo = f.section(data, "slo", required=True)
    candidates = f.section(data, "candidates")
    settings = f.section(data, "settings")
    constraints = f.section(data, "constraints")
    simulation = f.section(data, "simulation")
    quantile, slo_s = _slo(slo, f)
    unit, images_per_s = _demand(demand, f)
    return Request(
        resolutions=_resolutions(data.get("resolutions"), f),
        images_per_s=images_per_s,
        demand_unit=unit,
        peak_factor=f.number(demand, "demand.peak_factor", low=1.0, low_open=False, high=100.0),
        slo_quantile=quantile,
        slo_s=slo_s,
        steps=f.integer(data, "steps", low=1, high=100),
        guidance_scale=f.number(data, "guidance_scale", low=0.0, low_open=False),
        caption_tokens=f.integer(data, "caption_tokens", low=1, high=MAX_CAPTION_TOKENS),
        gpus=_gpu_ids(candidates.get("gpus", "all"), f),
        segments=f.choices(candidates, "candidates.segments", SEGMENTS, default=None),
        precisions=f.choices(settings, "settings.precisions", PRECISIONS, DEFAULT_PRECISIONS,
                             note=f"{', '.join(QUANTIZATIONS)} are lossy: listed only when "
                             "wanted"),
        batches=_batches(settings.get("batches", list(DEFAULT_BATCHES)), f),
        compile=_booleans(settings, "settings.compile", f),
        attention=f.choices(settings, "settings.attention", ATTENTIONS, ATTENTIONS),
        offload=f.choices(settings, "settings.offload", OFFLOADS, OFFLOADS),
        quant_scope=f.choices(settings, "settings.quant_scope", QUANT_SCOPES, QUANT_SCOPES),
        compile_mode=f.choices(settings, "settings.compile_mode", COMPILE_MODES, ("default",)),
        vae_compile=_booleans(settings, "settings.vae_compile", f),
        vae_channels_last=_booleans(settings, "settings.vae_channels_last", f),
        window_s=f.number(f.section(data, "batching"), "batching.window_s", low=0.0,
                          low_open=False, high=3600.0),
        memory_margin_gb=f.number(data, "memory_margin_gb", low=0.0, low_open=False),
        latency_basis=f.choice(data, "latency_basis", LATENCY_BASES),
        deployment=_deployment(f.section(data, "deployment"), f),
        prices=parse_sheet(data.get("prices"), f.source),
        max_gpus=f.integer(constraints, "constraints.max_gpus", low=1, high=1_000_000),
        max_usd_per_month=f.number(constraints, "constraints.max_usd_per_month", optional=True),
        max_capex_usd=f.number(constraints, "constraints.max_capex_usd", optional=True),
        n_plus_one=f.boolean(constraints, "constraints.n_plus_one", False),
        simulation=Simulation(
            requests=f.integer(simulation, "simulation.requests", low=1000, high=10_000_000,
                               default=DEFAULT_REQUESTS),
            warmup=f.integer(simulation, "simulation.warmup", low=0, high=10_000_000,
                             default=DEFAULT_WARMUP),
            seed=f.integer(simulation, "simulation.seed", low=0, high=2**32 - 1,
                           default=DEFAULT_SEED),
        ),
        source=f.source,
    )


def _slo(slo: dict, f: "Fields") -> tuple[float, float]:
    given = [k for k in QUANTILES if k in slo]
    if len(given) != 1:
        raise f.error("slo", "exactly one of p95_s or p99_s (seconds, end to end)",
                      "both" if given else "neither")
    key = given[0]
    return QUANTILES[key], f.number(slo, f"slo.{key}")


def _demand(demand: dict, f: "Fields") -> tuple[str, float]:
    given = [k for k in ("images_per_s", "images_per_day") if k in demand]
    if len(given) != 1:
        raise f.error("demand", "exactly one of images_per_s or images_per_day (the average)",
                      "both" if given else "neither")
    unit = given[0]
    per = SECONDS_PER_DAY if unit == "images_per_day" else 1
    value = f.number(demand, f"demand.{unit}", high=MAX_IMAGES_PER_S * per)
    return unit, value / SECONDS_PER_DAY if unit == "images_per_day" else value


def _resolutions(value, f: "Fields") -> tuple[Resolution, ...]:
    expected = "a non-empty list of {height, width, share} mappings"
    if value is None:
        return (Resolution(1024, 1024, 1.0),)
    if not isinstance(value, list) or not value:
        raise f.error("resolutions", expected, describe(value))
    out = []
    for i, item in enumerate(value):
        path = f"resolutions[{i}]"
        if not isinstance(item, dict):
            raise f.error(path, "a mapping with height, width and share", describe(item))
        f.keys(item, path, RESOLUTION_KEYS)
        for dim in ("height", "width"):
            check_side(dim, item.get(dim), f"{f.source}: field '{path}.{dim}'")
        share = f.number(item, f"{path}.share", low=0.0, high=1.0, key="share",
                         default=1.0 if len(value) == 1 else None)
        out.append(Resolution(item["height"], item["width"], share))
    total = sum(r.share for r in out)
    if not math.isclose(total, 1.0, abs_tol=0.005):
        raise f.error("resolutions", "shares that add up to 1", f"a total of {total:g}")
    labels = [r.label for r in out]
    duplicate = next((x for x in labels if labels.count(x) > 1), None)
    if duplicate:
        raise f.error("resolutions", "each resolution once", f"{duplicate} twice")
    return tuple(out)


def _gpu_ids(value, f: "Fields") -> tuple[str, ...] | None:
    if value == "all":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise f.error("candidates.gpus", '"all" or a non-empty list of catalog GPU ids',
                      describe(value))
    return tuple(v.strip().lower() for v in value)


def _batches(value, f: "Fields") -> tuple[int, ...]:
    if not (isinstance(value, list) and value and all(_is_int(v) and 1 <= v <= 256
                                                       for v in value)):
        raise f.error("settings.batches", "a non-empty list of integers 1..256",
                      describe(value))
    batches = tuple(sorted(set(value)))
    if batches[0] != 1:
        raise f.error("settings.batches",
                      "a list that includes 1 (a partial batch can hold a single request)",
                      describe(value))
    return batches


def _booleans(settings: dict, path: str, f: "Fields") -> tuple[bool, ...]:
    """A non-empty list of true/false at `path` (default both)."""
    value = settings.get(path.rsplit(".", 1)[-1], [False, True])
    if not (isinstance(value, list) and value and all(isinstance(v, bool) for v in value)):
        raise f.error(path, "a non-empty list of true/false", describe(value))
    return tuple(sorted(set(value)))


def _deployment(d: dict, f: "Fields") -> Deployment:
    cloud = f.section(d, "cloud", parent="deployment")
    owned = f.section(d, "owned", parent="deployment")
    return Deployment(
        mode=f.choice(d, "deployment.mode", MODES, default="cloud"),
        gpus_per_server=f.integer(d, "deployment.gpus_per_server", low=1, high=64),
        pue=f.number(d, "deployment.pue", low=1.0, low_open=False, high=3.0),
        server_w=f.number(d, "deployment.server_w", low=0.0, low_open=False, high=20_000.0),
        usd_per_gpu_hour=f.prices(cloud, "deployment.cloud.usd_per_gpu_hour"),
        gpu_price_usd=f.prices(owned, "deployment.owned.gpu_price_usd"),
        server_usd=f.number(owned, "deployment.owned.server_usd", low=0.0, low_open=False),
        amortization_years=f.number(owned, "deployment.owned.amortization_years", high=30.0),
        usd_per_kwh=f.number(owned, "deployment.owned.usd_per_kwh", low=0.0, low_open=False,
                             high=10.0),
    )


# --------------------------------------------------------------------------- field checks


class Fields:
    """Typed reads of the fields of a request (or of another document, e.g. a saved plan's
    options); each failure is an AdvisorError naming the source and the field. A field without
    a default (the argument, or DEFAULTS) is required."""

    def __init__(self, source: str):
        self.source = source

    def error(self, path: str, expected: str, found: str) -> AdvisorError:
        return AdvisorError(f"{self.source}: field '{path}': expected {expected}, found {found}")

    def keys(self, mapping: dict, path: str, allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(allowed)}"
                name = f"{path}.{key}" if path else str(key)
                raise AdvisorError(f"{self.source}: unknown field '{name}'; {hint}")

    def section(self, data: dict, key: str, required: bool = False, parent: str = "") -> dict:
        path = f"{parent}.{key}" if parent else key
        value = data.get(key)
        if value is None:
            if required:
                raise self.error(path, _section_hint(path), "nothing (the section is missing)")
            return {}
        if not isinstance(value, dict):
            raise self.error(path, _section_hint(path), describe(value))
        self.keys(value, path, SECTION_KEYS[path])
        return value

    def number(self, mapping: dict, path: str, low: float = 0.0, high: float | None = None,
               low_open: bool = True, optional: bool = False, key: str | None = None,
               default: float | None = None) -> float | None:
        key = key or path.rsplit(".", 1)[-1]
        if key not in mapping or mapping[key] is None:
            if optional:
                return None
            if default is None and key not in DEFAULTS:
                raise self.error(path, _number_words(low, high, low_open),
                                 describe(mapping[key]) if key in mapping else "nothing (missing)")
            return default if default is not None else DEFAULTS[key]
        value = mapping[key]
        ok = is_number(value) and (value > low if low_open else value >= low) and (
            high is None or value <= high)
        if not ok:
            raise self.error(path, _number_words(low, high, low_open), describe(value))
        return float(value)

    def integer(self, mapping: dict, path: str, low: int, high: int,
                default: int | None = None) -> int:
        key = path.rsplit(".", 1)[-1]
        if key not in mapping and (default is not None or key in DEFAULTS):
            return default if default is not None else DEFAULTS[key]
        value = mapping.get(key)
        if not (_is_int(value) and low <= value <= high):
            raise self.error(path, f"an integer {low}..{high}", describe(value))
        return value

    def boolean(self, mapping: dict, path: str, default: bool | None) -> bool:
        value = mapping.get(path.rsplit(".", 1)[-1], default)
        if not isinstance(value, bool):
            raise self.error(path, "true or false", describe(value))
        return value

    def choice(self, mapping: dict, path: str, allowed: tuple[str, ...],
               default: str | None = None) -> str:
        key = path.rsplit(".", 1)[-1]
        value = mapping.get(key, default if default is not None else DEFAULTS.get(key))
        if value not in allowed:
            raise self.error(path, f"one of {', '.join(allowed)}", describe(value))
        return value

    def choices(self, mapping: dict, path: str, allowed: tuple[str, ...], default,
                note: str = ""):
        """A non-empty list of names from `allowed`; an unknown name is named, with the
        closest known one. `note` is added to the expected values."""
        key = path.rsplit(".", 1)[-1]
        if key not in mapping:
            return default
        value = mapping[key]
        if not (isinstance(value, list) and value and all(v in allowed for v in value)):
            unknown = next((v for v in value if v not in allowed), None) \
                if isinstance(value, list) else None
            close = difflib.get_close_matches(str(unknown), allowed, n=1) if unknown else []
            found = describe(value) + (f": {unknown!r} is not one of them" + (
                f"; did you mean '{close[0]}'?" if close else "") if unknown is not None else "")
            raise self.error(path, f"a non-empty list of {', '.join(allowed)}"
                             + (f" ({note})" if note else ""), found)
        return tuple(dict.fromkeys(value))

    def prices(self, mapping: dict, path: str) -> dict:
        value = mapping.get(path.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise self.error(path, "a mapping of GPU id to price in USD", describe(value))
        for gpu_id, price in value.items():
            ok = is_number(price) and price > 0
            if not ok:
                raise self.error(f"{path}.{gpu_id}", "a positive price in USD", describe(price))
        return {str(k).strip().lower(): float(v) for k, v in value.items()}


def _section_hint(path: str) -> str:
    return f"a mapping with keys {', '.join(SECTION_KEYS[path])}"


def _number_words(low: float, high: float | None, low_open: bool) -> str:
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    return f"a number {bound}" + (f" and <= {high:g}" if high is not None else "")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


