"""What a load test serves and its bounds, checked when made (messages name the flag)."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from advisor.contract import MAX_STEPS, shape_label
from advisor.errors import AdvisorError, shown
from advisor.workload import MAX_CAPTION_TOKENS, check_side

SETTING_DEFAULTS = {"precision": "bf16", "attention": "native", "compile": False, "offload": "none"}
MAX_SPAN_S = 7 * 24 * 3600.0  # a week: the longest duration, warm-up or time limit taken
MAX_REQUESTS = 1_000_000  # a schedule's bound (its per-request arrays stay a few tens of MB)
MAX_BATCH = 1024  # the service table predicts every batch size up to it
MAX_REPLICAS = 4096
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Resolution:
    height: int
    width: int
    share: float

    @property
    def label(self) -> str:
        return shape_label(self.height, self.width)


def _number(value, low: float = -math.inf, high: float = math.inf) -> bool:
    """A finite number (not a boolean) within [low, high]."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and low <= value <= high)


def _integer(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def parse_resolution(text: str) -> Resolution:
    """`WxH` or `WxH:SHARE` (share 1 when left out): width x height, as `advisor recommend`
    and the dashboard write a size."""
    m = re.fullmatch(r"(\d{1,9})x(\d{1,9})(?::([0-9.eE+-]{1,40}))?", text.strip())
    if not m:
        raise AdvisorError(f"--resolution {shown(text)}: expected WIDTHxHEIGHT[:SHARE], e.g. "
                           "768x1344:0.3")
    try:
        share = float(m.group(3)) if m.group(3) else 1.0
    except ValueError:
        raise AdvisorError(f"--resolution {shown(text)}: the share is not a number") from None
    return Resolution(height=int(m.group(2)), width=int(m.group(1)), share=share)


@dataclass(frozen=True)
class LoadConfig:
    """One load test. Times in seconds from the first arrival."""

    resolutions: tuple[Resolution, ...]  # the mix; shares are normalised
    max_batch: int = 1  # the dispatcher's largest batch
    window_s: float = 0.1  # how long the oldest request may wait for its batch to fill
    rate_per_s: float | None = None  # Poisson rate (None: arrivals from a trace)
    duration_s: float = 120.0  # measured arrivals span this, after the warm-up
    warmup_s: float = 10.0  # arrivals in the first warmup_s are served but not measured
    limit_s: float | None = None  # wall-clock bound of the loop (default duration + warm-up x 2)
    max_requests: int = 100_000  # the schedule is cut at this many requests
    seed: int = 0
    steps: int = 9
    caption_tokens: int = 64
    setting: dict = field(default_factory=lambda: dict(SETTING_DEFAULTS))
    gpu: str | None = None  # catalog id the predictions are for
    replicas: int = 1  # GPUs behind the dispatcher (HTTP endpoints may have several)
    soak: bool = False

    def __post_init__(self):
        if not self.resolutions:
            raise AdvisorError("--resolution: give at least one resolution")
        for r in self.resolutions:
            for axis in ("height", "width"):
                check_side(axis, getattr(r, axis), f"--resolution {shown(r.label)}: {axis}")
            if not (_number(r.share) and 0 < r.share < 1e9):
                raise AdvisorError(f"--resolution {r.label}: the share must be a number > 0 "
                                   f"(at most 1e9), got {r.share}")
        checks = [
            ("--max-batch", self.max_batch, _integer(self.max_batch, 1, MAX_BATCH),
             f"an integer 1..{MAX_BATCH}"),
            ("--window-s", self.window_s, _number(self.window_s, 0, MAX_SPAN_S),
             f"a number of seconds 0..{MAX_SPAN_S:g}"),
            ("--rate", self.rate_per_s, self.rate_per_s is None or _number(self.rate_per_s, 0)
             and self.rate_per_s > 0, "a rate > 0 requests/s (finite)"),
            ("--duration-s", self.duration_s, _number(self.duration_s, 0, MAX_SPAN_S)
             and self.duration_s > 0, f"a duration > 0, at most {MAX_SPAN_S:g} s (a week)"),
            ("--warmup-s", self.warmup_s, _number(self.warmup_s, 0, MAX_SPAN_S),
             f"a number of seconds 0..{MAX_SPAN_S:g}"),
            ("--limit-s", self.limit_s, self.limit_s is None
             or _number(self.limit_s, 0, MAX_SPAN_S) and self.limit_s > 0,
             f"a time limit > 0, at most {MAX_SPAN_S:g} s"),
            ("--max-requests", self.max_requests, _integer(self.max_requests, 1, MAX_REQUESTS),
             f"an integer 1..{MAX_REQUESTS:,}"),
            ("--seed", self.seed, _integer(self.seed, 0, MAX_SEED), "an integer >= 0"),
            ("--steps", self.steps, _integer(self.steps, 1, MAX_STEPS),
             f"an integer 1..{MAX_STEPS}"),
            ("--caption-tokens", self.caption_tokens,
             _integer(self.caption_tokens, 1, MAX_CAPTION_TOKENS),
             f"an integer 1..{MAX_CAPTION_TOKENS}"),
            ("--replicas", self.replicas, _integer(self.replicas, 1, MAX_REPLICAS),
             f"an integer 1..{MAX_REPLICAS}"),
        ]
        for flag, value, ok, expected in checks:
            if not ok:
                raise AdvisorError(f"{flag}: expected {expected}, got {shown(value)}")
        if not isinstance(self.gpu, (str, type(None))) or len(self.gpu or "") > 100:
            raise AdvisorError(f"--gpu: expected a catalog id, got {shown(self.gpu)}")
        if not isinstance(self.soak, bool):
            raise AdvisorError(f"--soak: expected true or false, got {shown(self.soak)}")
        if not isinstance(self.setting, dict):
            raise AdvisorError(f"setting: expected a mapping, got {shown(self.setting)}")
        for name, value in self.setting.items():
            if not isinstance(value, (str, bool)) or len(str(value)) > 40:
                raise AdvisorError(f"--{name}: expected a setting name, got {shown(value)}")

    @property
    def shares(self) -> tuple[float, ...]:
        total = sum(r.share for r in self.resolutions)
        return tuple(r.share / total for r in self.resolutions)

    @property
    def time_limit_s(self) -> float:
        return self.limit_s if self.limit_s is not None else 2 * (self.duration_s + self.warmup_s)

    @classmethod
    def from_dict(cls, d: dict) -> "LoadConfig":
        """The config of a results file's `config` block (`as_dict` read back); AdvisorError
        naming the field for anything `as_dict` does not write."""
        known = {f for f in cls.__dataclass_fields__ if f != "resolutions"}
        if not isinstance(d, dict) or not isinstance(d.get("resolutions"), list):
            raise AdvisorError("field 'config': expected a mapping with a list 'resolutions'")
        resolutions = []
        for i, r in enumerate(d["resolutions"]):
            if not isinstance(r, dict) or not all(_integer(r.get(k), 1, 10**6)
                                                  for k in ("height", "width")):
                raise AdvisorError(f"field 'config.resolutions[{i}]': expected integer height "
                                   f"and width, found {shown(r)}")
            resolutions.append(Resolution(r["height"], r["width"], r.get("share")))
        try:
            return cls(resolutions=tuple(resolutions),
                       **{k: v for k, v in d.items() if k in known})
        except AdvisorError as exc:
            raise AdvisorError(f"field 'config': {exc}") from None
        except TypeError as exc:  # a field of the wrong type the checks compare
            raise AdvisorError(f"field 'config': a value of the wrong type ({exc})") from None

    def as_dict(self) -> dict:
        """The `config` block of a results file."""
        d = asdict(self)
        d["resolutions"] = [{"height": r.height, "width": r.width, "share": s}
                            for r, s in zip(self.resolutions, self.shares)]
        return d
