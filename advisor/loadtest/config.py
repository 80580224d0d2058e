"""What a load test serves and its bounds, checked when made (messages name the flag)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from advisor.contract import shape_label
from advisor.errors import AdvisorError

SETTING_DEFAULTS = {"precision": "bf16", "attention": "native", "compile": False, "offload": "none"}


@dataclass(frozen=True)
class Resolution:
    height: int
    width: int
    share: float

    @property
    def label(self) -> str:
        return shape_label(self.height, self.width)


def parse_resolution(text: str) -> Resolution:
    """`WxH` or `WxH:SHARE` (share 1 when left out): width x height, as `advisor recommend`
    and the dashboard write a size."""
    m = re.fullmatch(r"(\d+)x(\d+)(?::([0-9.eE+-]+))?", text.strip())
    if not m:
        raise AdvisorError(f"--resolution {text!r}: expected WIDTHxHEIGHT[:SHARE], e.g. "
                           "768x1344:0.3")
    try:
        share = float(m.group(3)) if m.group(3) else 1.0
    except ValueError:
        raise AdvisorError(f"--resolution {text!r}: the share is not a number") from None
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
            if r.height <= 0 or r.width <= 0 or r.height % 16 or r.width % 16:
                raise AdvisorError(f"--resolution {r.label}: height and width must be positive "
                                   "multiples of 16")
            if not r.share > 0:
                raise AdvisorError(f"--resolution {r.label}: the share must be > 0, got {r.share}")
        checks = [
            ("--max-batch", self.max_batch, isinstance(self.max_batch, int) and self.max_batch >= 1,
             "an integer >= 1"),
            ("--window-s", self.window_s, self.window_s >= 0, "a number >= 0"),
            ("--rate", self.rate_per_s, self.rate_per_s is None or self.rate_per_s > 0,
             "a rate > 0 requests/s"),
            ("--duration-s", self.duration_s, self.duration_s > 0, "a duration > 0"),
            ("--warmup-s", self.warmup_s, self.warmup_s >= 0, "a number >= 0"),
            ("--limit-s", self.limit_s, self.limit_s is None or self.limit_s > 0,
             "a time limit > 0"),
            ("--max-requests", self.max_requests, self.max_requests >= 1, "an integer >= 1"),
            ("--replicas", self.replicas, self.replicas >= 1, "an integer >= 1"),
        ]
        for flag, value, ok, expected in checks:
            if not ok:
                raise AdvisorError(f"{flag}: expected {expected}, got {value}")

    @property
    def shares(self) -> tuple[float, ...]:
        total = sum(r.share for r in self.resolutions)
        return tuple(r.share / total for r in self.resolutions)

    @property
    def time_limit_s(self) -> float:
        return self.limit_s if self.limit_s is not None else 2 * (self.duration_s + self.warmup_s)

    @classmethod
    def from_dict(cls, d: dict) -> "LoadConfig":
        """The config of a results file's `config` block (`as_dict` read back)."""
        known = {f for f in cls.__dataclass_fields__ if f != "resolutions"}
        return cls(resolutions=tuple(Resolution(int(r["height"]), int(r["width"]),
                                                float(r["share"])) for r in d["resolutions"]),
                   **{k: v for k, v in d.items() if k in known})

    def as_dict(self) -> dict:
        """The `config` block of a results file."""
        d = asdict(self)
        d["resolutions"] = [{"height": r.height, "width": r.width, "share": s}
                            for r, s in zip(self.resolutions, self.shares)]
        return d
