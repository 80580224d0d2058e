"""Published third-party measurements (data/published/points.yaml): a validation set only.

These points judge predictions for GPUs nobody here probed (`advisor validate`'s `published`
split); nothing fits on them. Which points are trusted was decided by the criteria in
data/published/README.md, written before any point was compared with a prediction. A point is
scored end to end (`seconds_per_image`, against the predicted total of its transformer
forwards) or per forward (`seconds_per_forward`, against the predicted denoise step).

Every point names its software `stack` (STACKS). The advisor models one stack, the Hugging Face
diffusers ZImagePipeline on PyTorch (MODELLED_STACK); stacks differ by 2x or more on one GPU, so
only that stack's points are scored as misses, and the others are reported apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from advisor import DATA_DIR
from advisor.contract import PRECISIONS, Config
from advisor.errors import AdvisorError, shown
from advisor.workload import check_shape
from advisor.inputs import load_yaml, read_text

PUBLISHED_PATH = DATA_DIR / "published" / "points.yaml"

# The software stack a figure was measured with -> what the name means.
STACKS = {
    "diffusers": "Hugging Face diffusers ZImagePipeline on PyTorch (the stack this tool models)",
    "comfyui": "ComfyUI (PyTorch, its own model and sampler code)",
    "sd.cpp": "stable-diffusion.cpp (ggml)",
    "sglang": "SGLang diffusion (sglang multimodal_gen)",
    "vllm-omni": "vLLM-Omni",
    "lightx2v": "LightX2V",
    "other": "another named program (e.g. a research script whose library is not stated)",
    "unknown": "the source does not name the software, or names two",
}
MODELLED_STACK = "diffusers"


@dataclass(frozen=True)
class PublishedPoint:
    id: str
    gpu: str | None  # catalog id, None for a card the catalog lacks
    config: Config | None  # steps = the transformer forwards that ran; None: not modelled
    seconds_per_image: float | None  # end to end
    seconds_per_forward: float | None  # one transformer forward (per-step figures)
    trusted: bool
    software: str
    source: str
    trust_note: str
    stack: str  # a key of STACKS
    stack_version: str | None  # as the source gives it, else None

    @property
    def modelled_stack(self) -> bool:
        """Measured with the software this tool models (MODELLED_STACK)."""
        return self.stack == MODELLED_STACK

    @property
    def scored(self) -> bool:
        """Trusted, on a catalog GPU, at a modelled precision, with a figure to compare."""
        return (self.trusted and self.gpu is not None and self.config is not None
                and (self.seconds_per_image or self.seconds_per_forward) is not None)


def load_published(path: str | Path = PUBLISHED_PATH) -> list[PublishedPoint]:
    """The points of a published-measurements file; AdvisorError naming the point and field."""
    path = Path(path)
    doc = load_yaml(read_text(path, "published measurements"), str(path))
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list):
        raise AdvisorError(f"{path}: expected a mapping with a `points` list")
    return [_point(p, f"{path}: points[{i}]") for i, p in enumerate(points)]


# Seconds a published figure may state: a 6B-parameter model takes more than a millisecond for
# an image or a forward on any GPU, and a figure of hours is a CPU or a misreading.
SECONDS_RANGE = (1e-3, 1e4)
TEXT_FIELDS = ("software", "source", "trust_note", "precision", "catalog_id")


def _point(p, where: str) -> PublishedPoint:
    if not isinstance(p, dict):
        raise AdvisorError(f"{where}: expected a mapping, got {shown(p)}")
    where = f"{where} ({str(p.get('id', '?'))[:80]})"
    for key, kind in (("id", str), ("trusted", bool)):
        if not isinstance(p.get(key), kind):
            raise AdvisorError(f"{where}: {key}: expected {kind.__name__}, got "
                               f"{shown(p.get(key))}")
    if not isinstance(p.get("stack"), str) or p["stack"] not in STACKS:
        raise AdvisorError(f"{where}: stack: expected one of {', '.join(STACKS)}, "
                           f"got {shown(p.get('stack'))}")
    version = p.get("stack_version")
    if version is not None and (isinstance(version, bool) or not isinstance(
            version, (str, int, float)) or not str(version).strip()):
        raise AdvisorError(f"{where}: stack_version: expected a version string or null, "
                           f"got {shown(version)}")
    for key in TEXT_FIELDS:
        if not isinstance(p.get(key), (str, type(None))):
            raise AdvisorError(f"{where}: {key}: expected text or null, got {shown(p.get(key))}")
    shape = {key: _integer(p, key, where, *bounds)
             for key, bounds in (("height", (16, 8192)), ("width", (16, 8192)),
                                 ("batch", (1, 1024)))}
    block = p.get("transformer_forwards")
    if not isinstance(block, (dict, type(None))):
        raise AdvisorError(f"{where}: transformer_forwards: expected a mapping with `count`, "
                           f"got {shown(block)}")
    forwards = _integer(block or {}, "count", f"{where}: transformer_forwards", 1, 1000)
    precision = (p.get("precision") or "").split(" ")[0]
    config = None
    if None not in shape.values() and forwards is not None and precision in PRECISIONS:
        try:
            check_shape(shape["height"], shape["width"])
        except AdvisorError as exc:
            raise AdvisorError(f"{where}: {exc}") from None
        config = Config(shape["height"], shape["width"], shape["batch"], steps=forwards,
                        precision=precision)
    return PublishedPoint(
        id=p["id"], gpu=p.get("catalog_id"), config=config,
        seconds_per_image=_value(p, "seconds_per_image", where),
        seconds_per_forward=_value(p, "seconds_per_forward", where),
        trusted=p["trusted"], software=(p.get("software") or "").strip(),
        source=" ".join((p.get("source") or "").split()),
        trust_note=" ".join((p.get("trust_note") or "").split()),
        stack=p["stack"], stack_version=None if version is None else str(version).strip())


def _integer(block: dict, key: str, where: str, low: int, high: int) -> int | None:
    """An integer field within [low, high], or None where it is absent or null."""
    value = block.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AdvisorError(f"{where}: {key}: expected an integer {low}..{high} or null, got "
                           f"{shown(value)}")
    return value


def _value(p: dict, key: str, where: str) -> float | None:
    block = p.get(key)
    value = block.get("value") if isinstance(block, dict) else block
    if value is None:
        return None
    low, high = SECONDS_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise AdvisorError(f"{where}: {key}.value: expected a number > 0, got {shown(value)}")
    if not low <= value <= high:
        raise AdvisorError(f"{where}: {key}.value: expected {low:g}..{high:g} s (a figure "
                           f"outside is a misreading, not a measurement), got {value:g}")
    return float(value)
