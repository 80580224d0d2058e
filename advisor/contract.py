"""The vocabulary every layer shares: setting names, a config, a setting, and a prediction.

This module sits at the bottom of the dependency graph (it imports nothing from the package but
errors): the probe writes `Config`s, the fitted models return `Prediction`s, and the planner,
claim checker, dashboard, export and validation read their attributes. A new setting or
prediction field is added here, once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from operator import attrgetter

# --------------------------------------------------------------------------- vocabularies
# Compute precisions: weights and activations in that dtype; `fp32-tf32` keeps fp32 weights and
# runs matmuls and convolutions on TF32 tensor cores.
COMPUTE_PRECISIONS = ("bf16", "fp16", "fp32", "fp32-tf32")


@dataclass(frozen=True)
class Quantization:
    """A quantized precision (torchao): the Linear layers of the transformer blocks and of the
    text encoder's layers are quantized, everything else (embedders, norms, the VAE) stays bf16,
    and activations are bf16 between layers."""

    weights: str  # how the quantized weights are stored: an advisor.workload WEIGHT_BITS key
    compute: str  # what the quantized matmuls run at: a catalog dense-TFLOPS key
    min_capability: tuple[int, int] | None  # the oldest CUDA compute capability it is offered on
    scheme: str  # the torchao config, for records and people
    compiles: bool = True  # offered with torch.compile

    @property
    def words(self) -> str:
        """The scheme without its torchao class name: what a person reads."""
        return self.scheme.split("): ", 1)[-1]


QUANTIZATIONS = {
    "fp8": Quantization("fp8", "fp8", (8, 9), "Float8DynamicActivationFloat8WeightConfig("
                        "granularity=PerRow()): e4m3 weights and activations, per-row scales"),
    # torchao itself runs fp8 weights below 8.9 (dequantizing to bf16); nothing here measured
    # that, so it is offered where fp8 is native only.
    "fp8-wo": Quantization("fp8", "bf16", (8, 9), "Float8WeightOnlyConfig(): e4m3 weights, "
                           "per-row scales, dequantized for bf16 matmuls"),
    # Compiled, int8-wo ran 13.5 s a denoising step at 512x512 b1 on the H200, eager 0.066 s
    # (torch 2.11, torchao 0.18, inductor defaults; data/measurements/h200-sxm-141gb-quantized):
    # not offered compiled.
    "int8-wo": Quantization("int8", "bf16", None, "Int8WeightOnlyConfig(): int8 weights, "
                            "per-row scales, bf16 matmuls", compiles=False),
}
# Every precision a config may name. The quantized ones are lossy: nothing here can measure
# image quality (the probe runs synthetic weights), so they are chosen only when asked for.
PRECISIONS = COMPUTE_PRECISIONS + tuple(QUANTIZATIONS)
QUALITY_CAVEAT = ("lossy: 8-bit weights change the images; their quality is not measured here "
                  "(synthetic weights), so judge it on your own prompts before serving it "
                  "(published comparisons: docs/planner.md, image quality)")


def dtype_of(precision: str) -> str:
    """The dtype a pipeline of `precision` is built in (quantized ones: bf16, then quantized)."""
    return "bf16" if precision in QUANTIZATIONS else precision


def compute_precision(precision: str) -> str:
    """The catalog dense-TFLOPS key the matmuls of `precision` run at."""
    return QUANTIZATIONS[precision].compute if precision in QUANTIZATIONS else precision


def setting_problem(setting) -> str | None:
    """What is wrong with a `Setting` (or a `Config`: the same fields) on any GPU, or None: the
    combinations that name nothing (a scope without quantization, a compile mode with nothing
    compiled) and those that cannot run (CUDA graphs with offload, whose hooks move the weights
    the graphs captured, or with the transformer's regional compile). Checked before any GPU
    work, as the vocabularies are."""
    for name, allowed in (("quant_scope", QUANT_SCOPES), ("compile_mode", COMPILE_MODES)):
        if getattr(setting, name) not in allowed:
            return f"{name}: expected one of {', '.join(allowed)}, got {getattr(setting, name)!r}"
    if setting.quant_scope != QUANT_SCOPES[0] and setting.precision not in QUANTIZATIONS:
        return (f"quant_scope: {setting.quant_scope!r} needs a quantized precision "
                f"({', '.join(QUANTIZATIONS)}); {setting.precision} quantizes nothing")
    if setting.compile_mode != "default" and not (setting.compile or setting.vae_compile):
        return (f"compile_mode: {setting.compile_mode!r} needs compile or vae_compile; "
                "nothing is compiled")
    if setting.compile_mode in CUDA_GRAPH_MODES and setting.offload != "none":
        return (f"compile_mode: {setting.compile_mode!r} records CUDA graphs, which cannot run "
                f"with offload {setting.offload} (its hooks move the weights the graphs hold)")
    if setting.compile_mode in CUDA_GRAPH_MODES and setting.compile:
        return (f"compile_mode: {setting.compile_mode!r} records CUDA graphs, which cannot run "
                "with the transformer's regional compile: in inference every run of a block's "
                "graph starts a new generation and overwrites the previous block's output, "
                "which the next block still reads (RuntimeError on the H100, "
                "data/measurements/h100-sxm-80gb-fastest.jsonl:3); the VAE alone may use them")
    return None


def quantized_parts(precision: str, quant_scope: str) -> tuple[str, ...]:
    """The components whose block Linear layers `precision` quantizes under `quant_scope`."""
    if precision not in QUANTIZATIONS:
        return ()
    return tuple(QUANT_SCOPES[0].split("+")) if quant_scope == QUANT_SCOPES[0] \
        else ("transformer",)


def with_precision(setting, precision: str):
    """`setting` (a `Setting` or a `Config`) at `precision`, its quantization scope reset where
    `precision` quantizes nothing."""
    scope = setting.quant_scope if precision in QUANTIZATIONS else QUANT_SCOPES[0]
    return replace(setting, precision=precision, quant_scope=scope)


def text_encoder_precision(precision: str, quant_scope: str) -> str:
    """The precision the text encoder runs at: its dtype when the scope leaves it unquantized."""
    return precision if "text_encoder" in quantized_parts(precision, quant_scope) \
        else dtype_of(precision)


def unsupported_reason(precision: str, capability: tuple[int, int] | None,
                       compile: bool = False, rate=None, attention: str = "native") -> str | None:
    """Why `precision` (compiled or not) with an `attention` backend is not offered on a GPU of
    CUDA compute `capability` (None: unknown, or not a CUDA GPU), or None when it is. With `rate`
    (the GPU's dense TFLOPS by catalog key, e.g. a catalog GPU's `dense_tflops`): also when the
    card has no rate for what its matmuls run at, or for a quantized precision's bf16 part
    (attention, the VAE)."""
    need = FUSED_ATTENTION_CAPABILITY
    if attention != "native" and capability is not None and tuple(capability) < need:
        return (f"{attention} attention needs compute capability {need[0]}.{need[1]} (torch's "
                "flash and cuDNN attention kernels run on Ampere and newer); this GPU has "
                f"{capability[0]}.{capability[1]}")
    if compile and precision in QUANTIZATIONS and not QUANTIZATIONS[precision].compiles:
        return (f"{precision} is not offered with torch.compile: compiled, it ran about 200x "
                "slower than eager on the H200 (13.5 s a step at 512x512; torch 2.11, "
                "torchao 0.18)")
    need = QUANTIZATIONS[precision].min_capability if precision in QUANTIZATIONS else None
    if need is not None and (capability is None or tuple(capability) < need):
        have = "an unknown compute capability" if capability is None else \
            f"compute capability {capability[0]}.{capability[1]}"
        return (f"{precision} needs fp8 support, which starts at compute capability "
                f"{need[0]}.{need[1]} (Ada, Hopper, Blackwell); this GPU has {have}")
    for key in dict.fromkeys((compute_precision(precision), dtype_of(precision))):
        if rate is not None and not rate(key):
            part = "" if key == precision else f" (what {precision} runs partly at)"
            return f"the catalog lists no dense {key} TFLOPS for it{part}"
    return None


# "The same image", for a setting that should not change it (attention backend, compile and its
# mode, the VAE's compile and memory format) against its plain setting on the same weights and
# seed (probes.measure): final latents within 2% of their largest magnitude, decoded images
# (values 0..1, computed in bf16, whose step is 2^-8 below 1) within 0.05: kernels that fuse or
# sum in another order differ in the last bits, and the steps and layers carry it on (the tiny
# CPU pipeline's channels-last VAE alone differed by 0.031 from its contiguous decode).
EQUALITY_TOLERANCE = {"latents_rel": 0.02, "image": 0.05}


def same_image(equality: dict) -> bool:
    """Whether a record's `results.equality` is within EQUALITY_TOLERANCE."""
    return (equality["latents_max_abs_diff"]
            <= EQUALITY_TOLERANCE["latents_rel"] * equality["latents_max_abs"]
            and equality["image_max_abs_diff"] <= EQUALITY_TOLERANCE["image"])


# Attention backends, by their diffusers `set_attention_backend` names (ATTENTION_BACKENDS).
ATTENTIONS = ("native", "cudnn", "flash")
# torch's flash and cuDNN fused attention kernels need Ampere (sm_80) or newer; native SDPA
# falls back to its math or memory-efficient kernels on older cards.
FUSED_ATTENTION_CAPABILITY = (8, 0)
ATTENTION_BACKENDS = {"native": "native", "cudnn": "_native_cudnn", "flash": "_native_flash"}
# What a quantized precision quantizes: the Linear layers of the transformer's blocks and of the
# text encoder's layers (the first quantized records), or the transformer's alone, the text
# encoder left bf16 (its 8-bit text encode was the slower one: 0.14-0.15 s at fp8 against bf16's
# 0.04 s on the H200), at the price of its bf16 weights (~8 GB against ~4 GB).
QUANT_SCOPES = ("transformer+text_encoder", "transformer")
# torch.compile modes (`mode=`) of the compiled parts: inductor's defaults, GEMM autotuning
# without or with CUDA graphs, or CUDA graphs alone (reduce-overhead).
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
# CPU offload: none, accelerate's per-component hooks (model), or per-layer streaming
# (sequential).
OFFLOADS = ("none", "model", "sequential")
# What a probe grid and a record may hold: OFFLOADS, plus diffusers' group offload (block level,
# transfers on a CUDA stream) for small cards. The fitted models and the planner search OFFLOADS.
PROBED_OFFLOADS = OFFLOADS + ("group",)
# VAE decode: whole, in tiles (vae.enable_tiling), one image of the batch at a time
# (vae.enable_slicing), or both.
VAE_MODES = ("full", "tiling", "slicing", "tiling+slicing")
# How a config spreads over the GPUs of one host: `none` (one GPU), `data` (a pipeline per GPU,
# all busy at once: throughput) or one image split across the GPUs by sequence parallelism
# (`ulysses`: all-to-all over attention heads; `ring`: key/value blocks passed around a ring).
PARALLEL_MODES = ("none", "data", "ulysses", "ring")
SPLIT_MODES = ("ulysses", "ring")
STATUSES = ("ok", "oom", "error")
WEIGHTS = ("synthetic", "pretrained")
STAGES = ("text_encode", "denoise", "vae_decode")
# Where a prediction's figures come from, from most to least direct evidence.
SOURCES = ("measured", "fitted", "transferred")
# What the planner sizes a batch's service time on: auto = a transferred figure (a GPU never
# probed) on its interval's upper end, a measured or fitted one on its point; point / upper =
# every figure on its point / its upper end.
LATENCY_BASES = ("auto", "point", "upper")

# Configs whose pixels x images are at most this are host-bound on the probed GPUs: the host
# issuing kernels sets a step's pace (at 512x512 batch 1 an H200 is busy 0.037 s of a 0.076 s
# step), so two machines of one GPU differ most there (advisor validate: machine spread) and
# their intervals are calibrated apart (Config.regime).
HOST_BOUND_PIXELS = 512 * 512
REGIMES = ("compute_bound", "host_bound")
DEFAULT_STEPS = 9  # Z-Image-Turbo's scheduler default: one transformer forward per step
# The scheduler's training timesteps (num_train_timesteps in data/zimage_turbo/scheduler): more
# steps than that only repeat timesteps, and no run of the Turbo model takes them.
MAX_STEPS = 1000
DEFAULT_CAPTION_TOKENS = 64
MAX_SEQUENCE_LENGTH = 512  # the text encoder's padded prompt length (pipeline default)
CFG_GUIDANCE_SCALE = 4.0  # guidance used when a prediction asks for CFG: any value > 0 runs
#                           the same kernels (ZImagePipeline runs CFG whenever it is > 0)


def cfg_passes(cfg: bool) -> int:
    """How many times a batch goes through the text encoder and each transformer step: twice
    with classifier-free guidance (prompt and negative prompt, concatenated), else once."""
    return 2 if cfg else 1


def shape_label(height: int, width: int) -> str:
    """An image size as people and `--resolution WxH` write it: width x height."""
    return f"{width}x{height}"


@dataclass(frozen=True)
class Setting:
    """How a pipeline runs, apart from the shape and batch: what the planner searches over."""

    precision: str = "bf16"
    attention: str = "native"
    compile: bool = False
    offload: str = "none"
    quant_scope: str = QUANT_SCOPES[0]
    compile_mode: str = "default"
    vae_compile: bool = False
    vae_channels_last: bool = False

    @property
    def label(self) -> str:
        return setting_label(self)

    def as_dict(self) -> dict:  # every field a scalar: no deep copy (asdict's) needed
        return {name: getattr(self, name) for name in SETTING_FIELDS}


SETTING_FIELDS = tuple(f.name for f in fields(Setting))  # a Config holds each one too

# The VAE's compile and memory format in a label: the pair as one word (narrow tables).
VAE_LABELS = {(True, True): "opt", (True, False): "compiled", (False, True): "nhwc"}


def setting_label(s) -> str:
    """A setting (a `Setting` or a `Config`) in a few words, e.g. "fp8 native compile
    mode=reduce-overhead te=bf16 vae=opt" (vae=opt: the VAE decoder compiled, channels-last;
    vae=compiled, vae=nhwc: one of the two; "compile+vae": the transformer and the VAE
    compiled, the VAE channels-last)."""
    parts = [s.precision, s.attention] + (["compile"] if s.compile else [])
    if s.offload != "none":
        parts.append(f"offload={s.offload}")
    if s.compile_mode != "default":
        parts.append(f"mode={s.compile_mode}")
    if s.quant_scope != QUANT_SCOPES[0]:
        parts.append(f"te={text_encoder_precision(s.precision, s.quant_scope)}")
    vae = VAE_LABELS.get((s.vae_compile, s.vae_channels_last))
    if vae == "opt" and s.compile:  # the usual pair, in the fewest characters
        return " ".join(parts).replace(" compile", " compile+vae", 1)
    return " ".join(parts + ([f"vae={vae}"] if vae else []))


@dataclass(frozen=True)
class Parallel:
    """A config's GPU layout: `mode` (PARALLEL_MODES) over `gpus` GPUs of one host."""

    mode: str = "none"
    gpus: int = 1

    @property
    def single(self) -> bool:
        return self.mode == "none"

    def label(self) -> str:
        return "" if self.single else f"{self.mode}x{self.gpus}"

    def problem(self) -> str | None:
        """What is wrong with this layout, or None."""
        if self.mode not in PARALLEL_MODES:
            return f"mode: expected one of {', '.join(PARALLEL_MODES)}, got {self.mode!r}"
        if self.single != (self.gpus == 1):
            return (f"gpus: expected 1 with mode none, 2 or more with mode {self.mode}, "
                    f"got {self.gpus}")
        return None


SINGLE_GPU = Parallel()


@dataclass(frozen=True)
class Config:
    """One pipeline call: a record's `config` block, a probe grid point, a prediction's query.

    `end_to_end` is a probe directive (also time whole calls to check the composition), not part
    of the config's identity nor of its record."""

    height: int
    width: int
    batch: int = 1
    steps: int = DEFAULT_STEPS
    guidance_scale: float = 0.0
    precision: str = "bf16"
    attention: str = "native"
    compile: bool = False
    offload: str = "none"
    caption_tokens: int = DEFAULT_CAPTION_TOKENS
    max_sequence_length: int = MAX_SEQUENCE_LENGTH
    end_to_end: bool = field(default=False, compare=False)
    vae: str = "full"
    # The probe's cap on what torch's allocator may take (GiB), emulating a smaller card; None:
    # the whole device.
    memory_cap_gib: float | None = None
    # Several GPUs of one host (data-parallel replicas, or one image split across them); a
    # single-GPU record has no `parallel` key, and a prediction is always single-GPU.
    parallel: Parallel = SINGLE_GPU
    quant_scope: str = QUANT_SCOPES[0]  # QUANT_SCOPES: what a quantized precision quantizes
    compile_mode: str = "default"  # COMPILE_MODES: torch.compile's mode for what is compiled
    vae_compile: bool = False  # torch.compile the VAE decoder (in compile_mode)
    vae_channels_last: bool = False  # the VAE in channels-last memory format
    # Probe directives, not part of the config's identity nor of its record: `check_equality`
    # also runs the config once against its plain setting on the same weights (probes.measure);
    # the sweep runs configs of a lower `priority` first (a grid's `order: listed`).
    check_equality: bool = field(default=False, compare=False)
    priority: int = field(default=0, compare=False)

    @property
    def cfg(self) -> bool:
        """ZImagePipeline runs classifier-free guidance whenever guidance_scale > 0."""
        return self.guidance_scale > 0

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def setting(self) -> Setting:
        return Setting(*(getattr(self, name) for name in SETTING_FIELDS))

    @classmethod
    def from_record(cls, config: dict) -> "Config":
        """The config of a record's `config` block (validated by advisor.records)."""
        values = {k: config[k] for k in CONFIG_FIELDS if k in config}
        if "parallel" in values:
            values["parallel"] = Parallel(values["parallel"]["mode"], values["parallel"]["gpus"])
        return cls(**values)

    def record(self) -> dict:
        """The record's `config` block (no `parallel` key for one GPU, as before it existed)."""
        return {k: v for k, v in asdict(self).items()
                if k in CONFIG_FIELDS and not (k == "parallel" and self.parallel.single)}

    def family(self) -> tuple:
        """Everything but the shape and batch: an OOM boundary holds within a family."""
        return _FAMILY(self)

    def oom_size(self) -> int:
        """Work that sets activation memory: pixels x images in the transformer batch (CFG
        doubles it)."""
        return self.pixels * self.batch * cfg_passes(self.cfg)

    def regime(self) -> str:
        """REGIMES: host-bound when its work is at most HOST_BOUND_PIXELS."""
        return "host_bound" if self.oom_size() <= HOST_BOUND_PIXELS else "compute_bound"

    def shape_label(self) -> str:
        return shape_label(self.height, self.width)

    def label(self) -> str:
        """The config in a few words, e.g. "1344x768 b4 bf16 flash compile"."""
        parts = [self.shape_label(), f"b{self.batch}", self.setting.label]
        if self.cfg:
            parts.append(f"cfg={self.guidance_scale:g}")
        if self.caption_tokens != DEFAULT_CAPTION_TOKENS:
            parts.append(f"cap={self.caption_tokens}")
        if self.steps != DEFAULT_STEPS:
            parts.append(f"steps={self.steps}")
        if self.vae != "full":
            parts.append(f"vae={self.vae}")
        if self.memory_cap_gib is not None:
            parts.append(f"memcap={self.memory_cap_gib:g}GiB")
        if not self.parallel.single:
            parts.append(self.parallel.label())
        return " ".join(parts)


# Config.family's fields (a C-level getter: a prediction keys thousands of configs by family)
_FAMILY = attrgetter(*SETTING_FIELDS, "steps", "guidance_scale", "caption_tokens",
                     "max_sequence_length", "vae", "memory_cap_gib", "parallel")
# The record's `config` keys (all of Config's fields but the probe directive), with type tags
# for advisor.records ("int" excludes bool, "num" is int or float).
CONFIG_FIELDS = {
    "height": "int", "width": "int", "batch": "int", "steps": "int", "guidance_scale": "num",
    "precision": "str", "attention": "str", "compile": "bool", "offload": "str",
    "caption_tokens": "int", "max_sequence_length": "int",
    "vae": "str", "memory_cap_gib": "num?", "parallel": "dict",
    "quant_scope": "str", "compile_mode": "str", "vae_compile": "bool",
    "vae_channels_last": "bool",
}
CHOICES = {"precision": PRECISIONS, "attention": ATTENTIONS, "offload": PROBED_OFFLOADS,
           "vae": VAE_MODES, "quant_scope": QUANT_SCOPES, "compile_mode": COMPILE_MODES}
DIRECTIVES = ("end_to_end", "check_equality", "priority")
assert set(CONFIG_FIELDS) == {f.name for f in fields(Config)} - set(DIRECTIVES)


# --------------------------------------------------------------------------- predictions
GB = 1e9  # memory figures in predictions are decimal GB, as the catalog's memory_gb


@dataclass(frozen=True)
class Latency:
    """Seconds of one batch, by stage, and the interval of the total."""

    text_encode_s: float
    denoise_s: float
    vae_decode_s: float
    other_s: float  # the rest of a call: latents, post-processing, offload hooks
    total_s: float
    denoise_step_s: float  # one steady denoising step
    interval_s: tuple[float, float]  # of total_s, at the stated coverage
    basis: str  # what the interval rests on


@dataclass(frozen=True)
class Memory:
    """Peak device memory of one call, GB, and what the `fits` verdict compared.

    `allocated_gb` is torch's peak allocated (what decides whether a run fits: the same on every
    GPU of a software stack); `nvml_gb` is memory used as nvidia-smi shows it (the caching
    allocator grows it into whatever is free, so it says little about smaller cards)."""

    allocated_gb: float
    allocated_interval_gb: tuple[float, float]
    nvml_gb: float
    nvml_interval_gb: tuple[float, float]
    nvml_capped: bool  # nvml_gb was capped by the GPU's size (the allocator released fragments)
    min_cap_gb: float  # smallest cap on torch's allocator the run needs (upper bound)
    min_cap_source: str  # capped-measured (which record), fitted, or assumed
    needed_gb: float  # what a run needs on the card: the basis of `fits` (advisor.memory_rule)
    capacity_gb: float
    capacity_source: str
    rule: str  # how needed_gb was computed
    basis: str  # what the intervals rest on

    @property
    def margin_gb(self) -> float:
        """Needed beyond torch's peak allocated (context, allocator fragments, safety)."""
        return self.needed_gb - self.allocated_gb

    @property
    def headroom_gb(self) -> float:
        return self.capacity_gb - self.needed_gb


@dataclass(frozen=True)
class Power:
    watts: float | None  # board power while denoising; None: unknown (the catalog TDP is
    #                      the caller's fallback)
    source: str | None
    energy_j_per_image: float | None


@dataclass(frozen=True)
class Prediction:
    """Everything the advisor says about one config on one GPU: measured figures and fitted
    ones alike are built into this (advisor.models), and every consumer reads its attributes."""

    gpu: str  # catalog id
    config: Config
    latency: Latency
    memory: Memory
    fits: bool
    fits_reason: str
    source: str  # one of SOURCES
    source_detail: str
    achieved_tflops: float  # transformer FLOPs of a steady step / its time
    mfu: float  # achieved_tflops / the catalog's dense peak for the precision
    power: Power
    model_version: str

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"source: expected one of {', '.join(SOURCES)}, got {self.source!r}")

    @property
    def images_per_s(self) -> float:
        return self.config.batch / self.latency.total_s

    def as_dict(self) -> dict:
        """Plain JSON-ready form (`advisor predict --format json`)."""
        out = asdict(self)
        out["config"] = {**self.config.record(), "cfg": self.config.cfg}
        out["images_per_s"] = self.images_per_s
        out["memory"].update(margin_gb=self.memory.margin_gb, headroom_gb=self.memory.headroom_gb)
        for section in ("latency", "memory"):
            out[section] = {k: list(v) if isinstance(v, tuple) else v
                            for k, v in out[section].items()}
        return out
