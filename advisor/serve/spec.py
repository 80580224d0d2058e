"""What a served plan runs: the option's GPU, setting, max batch and window, the resolutions of
the request's mix, the replicas (one per serving GPU) and the queue bounds. Built from a saved
plan (`from_plan`) or read back from the arguments of a Ray Serve config (`from_dict`), checked
either way with messages that name the field.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from advisor.contract import shape_label
from advisor.errors import AdvisorError, describe

DEVICES = ("cuda", "cpu")
DEFAULT_QUEUE_BATCHES = 8  # requests a replica holds beyond its running batch, in max batches
DEFAULT_REQUEST_TIMEOUT_S = 120.0
MAX_REPLICAS = 4096
INGRESS_MAX_ONGOING = 10_000  # the front only awaits replicas: it holds what they queue
HEALTH_CHECK_PERIOD_S = 10.0
HEALTH_CHECK_TIMEOUT_S = 30.0
# A replica told to stop checks this often whether its last requests have ended (Ray's default
# is 2 s): a stop or a redeploy of an idle deployment takes about 1.4 s instead of 4.6 s.
SHUTDOWN_WAIT_LOOP_S = 0.25
INGRESS_OPTIONS = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0},
                   "max_ongoing_requests": INGRESS_MAX_ONGOING,
                   "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S}


@dataclass(frozen=True)
class ServeSpec:
    resolutions: tuple[tuple[int, int], ...]  # (height, width) the plan covers
    max_batch: int = 1
    window_s: float = 0.1
    steps: int = 9
    caption_tokens: int = 64
    setting: dict = field(default_factory=lambda: {"precision": "bf16", "attention": "native",
                                                   "compile": False, "offload": "none"})
    gpu: str | None = None  # the plan's catalog GPU
    replicas: int = 1  # one per serving GPU
    gpus_per_replica: float = 1.0  # 0 for CPU replicas (tests)
    device: str = "cuda"
    weights: str = "auto"  # as `advisor probe --weights`
    tiny: bool = False  # the tiny pipeline (tests)
    max_queued: int = 0  # requests waiting per replica beyond max_ongoing; 0: from the batch
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    # how often Ray Serve asks a replica whether it is healthy: a dead one is replaced after it
    health_check_period_s: float = HEALTH_CHECK_PERIOD_S
    plan: str | None = None  # where it came from: "PLAN.yaml#option"

    def __post_init__(self):
        def bad(name, expected):
            raise AdvisorError(f"serve: field {name!r}: expected {expected}, found "
                               f"{describe(getattr(self, name))}")

        if not self.resolutions:
            bad("resolutions", "at least one [height, width]")
        for h, w in self.resolutions:
            if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
                    and h % 16 == 0 and w % 16 == 0):
                bad("resolutions", "positive multiples of 16")
        for name, low in (("max_batch", 1), ("steps", 1), ("caption_tokens", 1),
                          ("replicas", 1), ("max_queued", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                bad(name, f"an integer >= {low}")
        if self.replicas > MAX_REPLICAS:
            bad("replicas", f"at most {MAX_REPLICAS}")
        for name in ("window_s", "gpus_per_replica"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                bad(name, "a number >= 0")
        if not self.request_timeout_s > 0:
            bad("request_timeout_s", "a number > 0")
        period = self.health_check_period_s
        if isinstance(period, bool) or not isinstance(period, (int, float)) \
                or not 0 < period < float("inf"):
            bad("health_check_period_s", "a finite number > 0")
        if self.device not in DEVICES:
            bad("device", " or ".join(DEVICES))

    @property
    def queue_limit(self) -> int:
        """Requests one replica holds: its running batch and the queue behind it."""
        return self.max_queued or self.max_batch * (1 + DEFAULT_QUEUE_BATCHES)

    def generator_options(self) -> dict:
        """The Generator deployment's Ray Serve options: replicas, GPUs each, and the queue
        bounds (a replica holds its batch and the queue behind it; the front's handle holds as
        many again per replica before it answers 503)."""
        return {"num_replicas": self.replicas,
                "ray_actor_options": {"num_gpus": self.gpus_per_replica},
                "max_ongoing_requests": self.queue_limit,
                "max_queued_requests": self.queue_limit * self.replicas,
                "health_check_period_s": self.health_check_period_s,
                "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
                "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S}

    @property
    def sizes(self) -> list[str]:
        return [shape_label(h, w) for h, w in self.resolutions]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["resolutions"] = [list(r) for r in self.resolutions]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "serve args") -> "ServeSpec":
        if not isinstance(d, dict):
            raise AdvisorError(f"{source}: expected a mapping of serve settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AdvisorError(f"{source}: unknown field(s) {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(known))}")
        d = dict(d)
        try:
            d["resolutions"] = tuple((int(h), int(w)) for h, w in d.get("resolutions", ()))
        except (TypeError, ValueError):
            raise AdvisorError(f"{source}: field 'resolutions': expected a list of "
                               "[height, width]") from None
        return cls(**d)

    def with_changes(self, **changes) -> "ServeSpec":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def from_plan(path: Path, option: int = 0) -> ServeSpec:
    """The spec of option `option` of a saved plan (`advisor recommend --out`)."""
    from advisor.export import load_plan

    return spec_of(load_plan(path), path, option)


def spec_of(doc: dict, path: Path, option: int = 0) -> ServeSpec:
    """The spec of option `option` of a loaded plan document."""
    options = doc["results"]["options"]
    if not 0 <= option < len(options):
        raise AdvisorError(f"--option {option}: {path} has {len(options)} option(s)")
    chosen, request = options[option], doc["request"]
    return ServeSpec(
        resolutions=tuple((r.height, r.width) for r in request.resolutions),
        max_batch=int(chosen["max_batch"]), window_s=float(request.window_s),
        steps=request.steps, caption_tokens=request.caption_tokens,
        setting=dict(chosen["setting"]), gpu=chosen["gpu"],
        replicas=int(chosen["fleet"]["serving_gpus"]), plan=f"{path}#{option}")
