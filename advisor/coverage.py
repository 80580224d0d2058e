"""How far a prediction reaches beyond its evidence, in words: image sizes and batches beyond
the probed ones (extrapolated), a GPU the probe cannot drive, a host-bound config (its speed
depends on the machine), a memory need over the card.

Every figure the advisor prints says where it comes from; these caveats say where that source
stops holding: `predict`, the planner's options and the claim checker print them beside the
figures they qualify.
"""
from __future__ import annotations

from dataclasses import dataclass

from advisor.contract import Config, Prediction, shape_label


@dataclass(frozen=True)
class Probed:
    """The sizes the measurements cover (ok records of any GPU: the models' shape terms are
    shared), as pixels per image, batch and images in flight (pixels x batch, x2 with CFG)."""

    min_pixels: int
    max_pixels: int
    max_batch: int
    max_work: int
    smallest: str  # e.g. "512x512"
    largest: str
    steps: tuple[int, int]  # the fewest and most denoising steps of a probed run

    @classmethod
    def of(cls, records: list[dict]) -> "Probed | None":
        """The range of the ok records; None without any (nothing to compare with)."""
        configs = [Config.from_record(r["config"]) for r in records if r.get("status") == "ok"]
        if not configs:
            return None
        small = min(configs, key=lambda c: c.pixels)
        large = max(configs, key=lambda c: c.pixels)
        return cls(min_pixels=small.pixels, max_pixels=large.pixels,
                   max_batch=max(c.batch for c in configs),
                   max_work=max(c.oom_size() for c in configs),
                   smallest=small.shape_label(), largest=large.shape_label(),
                   steps=(min(c.steps for c in configs), max(c.steps for c in configs)))


def extrapolation(config: Config, probed: Probed | None) -> str:
    """Why `config` lies beyond the probed sizes and batches ("" when inside them, or when
    nothing was probed)."""
    if probed is None:
        return ""
    reasons = []
    size = shape_label(config.height, config.width)
    if config.pixels > probed.max_pixels:
        reasons.append(f"{size} is larger than the largest probed image ({probed.largest})")
    elif config.pixels < probed.min_pixels:
        reasons.append(f"{size} is smaller than the smallest probed image ({probed.smallest})")
    if config.batch > probed.max_batch:
        reasons.append(f"batch {config.batch} is above the largest probed ({probed.max_batch})")
    elif config.oom_size() > probed.max_work:
        reasons.append(f"{config.oom_size() / 1e6:.1f} M pixels in flight is more than any "
                       f"probed run ({probed.max_work / 1e6:.1f} M)")
    low, high = probed.steps
    if not low <= config.steps <= high:
        probed_steps = f"{low}" if low == high else f"{low}-{high}"
        reasons.append(f"{config.steps} steps, where the probed runs had {probed_steps} (the "
                       "total assumes every further step takes the probed step's time)")
    return "; ".join(reasons)


def caveats(prediction: Prediction, gpu, probed: Probed | None) -> list[str]:
    """What a reader of `prediction` on catalog GPU `gpu` must know about its figures."""
    out = []
    why = extrapolation(prediction.config, probed)
    if why:
        out.append(f"extrapolated beyond the measurements: {why}; the figures follow the "
                   "fitted laws, unchecked at this size")
    if not gpu.runnable:
        out.append(f"not runnable: the probe cannot drive the {gpu.name} (catalog runnable: "
                   "false), so nothing was ever measured on its software stack; its figures are "
                   "carried over from NVIDIA GPUs by datasheet specs alone")
    if prediction.config.regime() == "host_bound":
        out.append("host-bound: one image this small keeps a fast GPU waiting on the host CPU "
                   "issuing its kernels, so the same GPU runs it at different speeds on "
                   "different machines (`advisor validate` gives the spread); two images or "
                   "more in flight (a batch, or CFG) move the pace back to the GPU")
    m = prediction.memory
    if m.needed_gb > m.capacity_gb:
        out.append(f"over capacity: needs {m.needed_gb:.1f} GB, more than the card's "
                   f"{m.capacity_gb:.1f} GB; it would not run without offload or a smaller "
                   "batch or image")
    return out


def accuracy(prediction: Prediction) -> str:
    """How far the latency may be from the point, for this prediction's own source: the
    measured spread, the probed GPUs' cross-validation, or a transferred GPU's wider
    leave-one-GPU-out error (never the probed GPUs' accuracy quoted for a transferred one)."""
    lat = prediction.latency
    lo, hi = (100 * (x / lat.total_s - 1) for x in lat.interval_s)
    return (f"{prediction.source}: the 90% interval of its latency runs {lo:+.0f}% to {hi:+.0f}%"
            f" around the point ({lat.basis})")
