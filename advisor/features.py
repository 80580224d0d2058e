"""What the fitted models see: a query row (config + GPU specs) turned into physical quantities.

Latency features are seconds at 100% efficiency (FLOPs / peak FLOP/s, bytes / bandwidth), so a
fitted coefficient is an inverse efficiency and the same coefficients carry over to a GPU with
other specs. Memory features are MiB per unit coefficient. numpy only: the cached models load
and predict without scipy or scikit-learn.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

import numpy as np

from advisor import workload
from advisor.errors import AdvisorError
from advisor.contract import (
    ATTENTIONS, CFG_GUIDANCE_SCALE, MAX_SEQUENCE_LENGTH, MAX_STEPS, OFFLOADS, PRECISIONS,
    QUANTIZATIONS, Config, cfg_passes, dtype_of, setting_problem, text_encoder_precision,
    unsupported_reason,
)

MIB = 2**20
LATENCY_STAGES = ("text_encode", "denoise_step", "first_step_extra", "vae_decode", "other")
MEMORY_STAGES = ("text_encode", "denoise", "vae_decode")
SETTING_KEYS = ("precision", "attention", "compile", "offload")
# The transformer's settings beyond SETTING_KEYS (its compile mode), the text encoder's (the
# precision it runs at: contract.text_encoder_precision) and the VAE's (its compile, in the
# compile mode, and its memory format): each a stage's setting group (advisor.estimators).
TRANSFORMER_KEYS = SETTING_KEYS + ("compile_mode",)
TEXT_ENCODER_KEYS = ("te_precision",)
VAE_KEYS = ("vae_mode", "vae_channels_last")
# Bytes of an activation element, by dtype (contract.dtype_of: quantized pipelines keep bf16
# activations).
ELEMENT_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4, "fp32-tf32": 4}

# HBM passes over a (tokens x dim) activation per transformer block: norms, modulation, residual
# adds, RoPE, the gated FFN (2.7x dim wide) and GEMM inputs/outputs. Only the ratio to the weight
# bytes matters: the fitted bandwidth coefficient scales both.
TRANSFORMER_ACTIVATION_PASSES = 50
# Per-pixel HBM traffic of the VAE decoder in elements (128-channel full-resolution convs, norms
# and activations dominate); again only a scale for its fitted coefficient.
VAE_ELEMENTS_PER_PIXEL = 128 * 40
# Effective host-to-device bandwidth as a fraction of the PCIe link rate (pinned copies).
PCIE_EFFICIENCY = 0.8
PCIE_LANE_GBS = {"3": 0.985, "4": 1.969, "5": 3.938, "6": 7.563}
DEFAULT_PCIE = ("4", 16)  # when the catalog's host_interface does not name a PCIe link


@dataclass(frozen=True)
class GpuSpec:
    """The catalog numbers the models use for one GPU."""

    id: str
    architecture: str
    capacity_gb: float  # decimal GB the card has (catalog GPU.capacity_gb)
    capacity_source: str
    bandwidth_gbs: float
    pcie_gbs: float
    tflops: dict  # advisor precision name -> dense TFLOP/s (None: no such path)
    gemm_tflops: float | None = None  # achieved dense bf16 matmul rate (specs_of)
    gemm_source: str = ""
    capability: tuple[int, int] | None = None  # CUDA compute capability (None: unknown, AMD)

    @classmethod
    def from_catalog(cls, gpu, gemm: tuple[float | None, str] = (None, "")) -> "GpuSpec":
        return cls(
            id=gpu.id,
            architecture=gpu.architecture,
            capacity_gb=gpu.capacity_gb,
            capacity_source=(f"catalog {gpu.id}: {gpu.usable_memory_gb:g} GB usable of its "
                             f"{gpu.memory_gb:g} GB shared with the CPU "
                             f"({gpu.usable_memory_gb_source})" if gpu.usable_memory_gb else
                             f"catalog {gpu.id}: {gpu.memory_mib:g} MiB total as nvidia-smi "
                             f"reports it ({gpu.memory_mib_source})" if gpu.memory_mib else
                             f"catalog {gpu.id}: memory_gb {gpu.memory_gb:g} read as GiB (no "
                             "nvidia-smi total in the catalog)"),
            bandwidth_gbs=float(gpu.memory_bandwidth_gbps),
            pcie_gbs=pcie_gbs(gpu.host_interface),
            tflops={p: gpu.dense_tflops(p) for p in PRECISIONS},
            gemm_tflops=gemm[0], gemm_source=gemm[1], capability=gpu.capability,
        )


def specs_of(catalog_gpus) -> dict[str, GpuSpec]:
    """GpuSpecs of every catalog GPU. The achieved matmul rate is the catalog's cited figure,
    or for a GPU without one its dense bf16 peak times the median achieved fraction of the
    cited GPUs of its architecture, else of every cited GPU (and says so)."""
    cited = [g for g in catalog_gpus if g.achieved_bf16_tflops and g.dense_tflops("bf16")]
    fraction = lambda gpus: float(np.median([g.achieved_bf16_tflops / g.dense_tflops("bf16")
                                             for g in gpus])) if gpus else None
    out = {}
    for g in catalog_gpus:
        peak = g.dense_tflops("bf16")
        if g.achieved_bf16_tflops:
            gemm = (float(g.achieved_bf16_tflops), "measured, cited in the catalog")
        elif peak and cited:
            same = [c for c in cited if c.architecture == g.architecture]
            f = fraction(same) or fraction(cited)
            gemm = (peak * f, f"assumed: {f:.0%} of the {peak:g} TFLOP/s peak, the median of "
                    + (f"{len(same)} cited {g.architecture} GPUs" if same
                       else f"{len(cited)} cited GPUs (none of {g.architecture})"))
        else:
            gemm = (None, "")
        out[g.id] = GpuSpec.from_catalog(g, gemm)
    return out


def pcie_gbs(host_interface: str) -> float:
    """Effective host-to-device GB/s of a link named like "PCIe 5.0 x16"."""
    match = re.search(r"pcie\s*(?:gen\s*)?(\d)(?:\.0)?(?:\s*x(\d+))?", host_interface or "", re.I)
    gen, lanes = (match.group(1), int(match.group(2) or 16)) if match else DEFAULT_PCIE
    return PCIE_LANE_GBS.get(gen, PCIE_LANE_GBS[DEFAULT_PCIE[0]]) * lanes * PCIE_EFFICIENCY


# Config fields the probe varies but no model covers: a query must hold the value the models
# were fitted at, or be refused (never answered as if it were the plain config).
UNMODELLED_FIELDS = (
    ("vae", "full", "tiled and sliced VAE decodes are probed, not fitted"),
    ("memory_cap_gib", None, "a run under an allocator cap is not a card's own figure: the "
                             "minimum-cap model answers what cap a config needs"),
    ("max_sequence_length", MAX_SEQUENCE_LENGTH, "the text encoder is fitted on prompts padded "
                                                 "to the pipeline's 512 tokens"),
)


def check_config(config: Config) -> None:
    """AdvisorError naming the first field of a config the models cannot answer for."""
    workload.check_shape(config.height, config.width)
    for name in ("batch", "steps"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AdvisorError(f"{name}: expected an integer >= 1, got {value!r}")
    if config.steps > MAX_STEPS:
        raise AdvisorError(f"steps: expected at most {MAX_STEPS} (the scheduler's training "
                           f"timesteps; Z-Image-Turbo runs 8-9), got {config.steps}")
    workload.padded_caption_tokens(config.caption_tokens)  # validates 1..512
    for name, allowed in (("precision", PRECISIONS), ("attention", ATTENTIONS),
                          ("offload", OFFLOADS)):
        value = getattr(config, name)
        if value not in allowed:
            raise AdvisorError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
    if config.precision in QUANTIZATIONS and config.offload != "none":
        raise AdvisorError(f"offload: {config.precision} with offload {config.offload} is not "
                           "modelled: the probe runs quantized precisions without offload only")
    problem = setting_problem(config)
    if problem:
        raise AdvisorError(problem)
    for name, modelled, why in UNMODELLED_FIELDS:
        if getattr(config, name) != modelled:
            raise AdvisorError(f"{name}: {getattr(config, name)!r} is not modelled ({why}); the "
                               f"models answer for {name} {modelled!r} only")
    if not config.parallel.single:
        raise AdvisorError(f"parallel: {config.parallel.label()} is not modelled (several GPUs "
                           "are probed, not fitted); the models answer for one GPU only")


def refusal(spec: GpuSpec, config: Config) -> str | None:
    """Why the models do not answer for a valid `config` on this GPU, or None: a precision its
    compute capability does not offer, or not compiled (contract.unsupported_reason), or one
    the catalog lists no dense rate for."""
    reason = unsupported_reason(config.precision, spec.capability, config.compile,
                                spec.tflops.get, config.attention)
    return reason and f"gpu {spec.id}: {reason}"


def make_row(spec: GpuSpec, config: Config, capacity_mib: float | None = None) -> dict:
    """A validated query row: the config plus the GPU numbers the features need. `capacity_mib`
    is the memory of the card a record ran on (its NVML total); default the catalog's.
    AdvisorError for an invalid config, one with a field no model covers (UNMODELLED_FIELDS, a
    layout of several GPUs) or a `refusal`. The guidance value is kept as CFG on or off: any
    value above 0 runs the same kernels."""
    check_config(config)
    reason = refusal(spec, config)
    if reason:
        raise AdvisorError(reason)
    return row_of(spec, config, capacity_mib)


def row_of(spec: GpuSpec, config: Config, capacity_mib: float | None = None) -> dict:
    """make_row's row without its checks, for a config derived from one it accepted, on a GPU
    known to run it: a smaller shape or batch, the bf16 twin, a GPU that measured the setting
    (a prediction builds thousands of these)."""
    return {
        "gpu": spec.id, "height": config.height, "width": config.width, "batch": config.batch,
        "steps": config.steps, "precision": config.precision,
        "dtype": dtype_of(config.precision), "attention": config.attention,
        "compile": bool(config.compile), "offload": config.offload, "cfg": config.cfg,
        "caption_tokens": config.caption_tokens, "quant_scope": config.quant_scope,
        "compile_mode": config.compile_mode,
        "te_precision": text_encoder_precision(config.precision, config.quant_scope),
        "vae_compile": bool(config.vae_compile),
        # the mode the VAE is compiled in: its kernels' group (eager: none)
        "vae_mode": config.compile_mode if config.vae_compile else "eager",
        "vae_channels_last": bool(config.vae_channels_last),
        "tflops": float(spec.tflops[config.precision]),
        "te_tflops": float(spec.tflops[text_encoder_precision(config.precision,
                                                                config.quant_scope)]),
        "dtype_tflops": float(spec.tflops[dtype_of(config.precision)]),
        "attention_tflops": float(attention_peak(spec, config.precision)),
        "bandwidth_gbs": spec.bandwidth_gbs, "pcie_gbs": spec.pcie_gbs,
        "capacity_mib": float(capacity_mib or spec.capacity_gb * 1e9 / MIB),
    }


def shape_config(row: dict) -> Config:
    """The shape part of a query row (size, batch, CFG) as a Config: its reach and regime."""
    return _shape_config(row["height"], row["width"], row["batch"], row["cfg"])


@lru_cache(maxsize=4096)  # a prediction asks for its row's up to seven times
def _shape_config(height: int, width: int, batch: int, cfg: bool) -> Config:
    return Config(height, width, batch, guidance_scale=CFG_GUIDANCE_SCALE if cfg else 0.0)


# The identities of a query row, by what they key (the row holds only modelled fields:
# check_config refuses the others, so no key can confuse a capped or tiled run with a plain one).
# Every setting of a row (contract.Setting's fields)
ROW_SETTINGS = SETTING_KEYS + ("quant_scope", "compile_mode", "vae_compile", "vae_channels_last")


# (C-level getters: a planner's search and a validation key millions of rows)
_MATCH_KEY = itemgetter("gpu", "height", "width", "batch", "steps", *ROW_SETTINGS, "cfg",
                        "caption_tokens")
_SETTING_KEY = itemgetter("gpu", *ROW_SETTINGS)
_MEMORY_KEY = itemgetter("height", "width", "batch", *ROW_SETTINGS, "cfg", "caption_tokens")


def match_key(row: dict) -> tuple:
    """A config on a GPU, for exact measured matches."""
    return _MATCH_KEY(row)


def setting_key(row: dict) -> tuple:
    """A setting on a GPU: the shapes it was probed at, its fitted group."""
    return _SETTING_KEY(row)


def memory_key(row: dict) -> tuple:
    """What sets a config's memory, on any GPU: shape, batch and settings (not steps)."""
    return _MEMORY_KEY(row)


def group_of(row: dict) -> tuple:
    """A setting on any GPU, as the op-class profiles split it (advisor.transfer)."""
    return (row["precision"], row["attention"], row["compile"])


def attention_peak(spec: GpuSpec, precision: str) -> float:
    """Dense TFLOP/s the attention kernels run at: the peak of the precision's dtype (a
    quantized precision leaves attention in bf16), except with TF32 matmuls, where SDPA still
    gets fp32 inputs and no fused kernel takes them on tensor cores (flash attention has no
    fp32 path), so it runs at the plain fp32 rate."""
    if precision == "fp32-tf32" and spec.tflops.get("fp32"):
        return spec.tflops["fp32"]
    return spec.tflops[dtype_of(precision)]


def element_bytes(precision: str) -> int:
    """Bytes of an activation element of a pipeline at `precision`."""
    return ELEMENT_BYTES[dtype_of(precision)]


# ---------------------------------------------------------------------------------------------
# Workload quantities (per image), cached: the planner asks for the same shapes many times.


@lru_cache(maxsize=1)
def _arch():
    return workload.load_architecture()


@lru_cache(maxsize=4096)
def shape_costs(height: int, width: int, caption_tokens: int) -> dict:
    """Per-image FLOPs and sizes of one shape: transformer forward (total and attention part),
    VAE decode, and the padded token counts."""
    t = _arch().transformer
    multiple = workload.SEQ_MULTIPLE
    image = -(-workload.image_tokens(height, width) // multiple) * multiple
    caption = workload.padded_caption_tokens(caption_tokens)
    seq = image + caption
    # SDPA: Q@K^T and P@V, 2 FLOPs per MAC, over all heads (= 4 * dim * q * kv), as workload counts.
    attention = 4 * t.dim * (t.n_refiner_layers * (image**2 + caption**2) + t.n_layers * seq**2)
    return {
        "forward_tflops": workload.transformer_tflops_per_forward(height, width, caption_tokens),
        "attention_tflops": attention / 1e12,
        "vae_tflops": workload.vae_decode_tflops(height, width),
        "seq_tokens": seq,
        "latent_pixels": (height // 8) * (width // 8),
    }


@lru_cache(maxsize=32)
def _weight_bytes(precision: str, quant_scope: str) -> dict:
    return workload.weight_bytes(precision, quant_scope=quant_scope)


def weight_bytes(row: dict) -> dict:
    """Bytes of weights per component of a row's precision and quantization scope."""
    return _weight_bytes(row["precision"], row["quant_scope"])


@lru_cache(maxsize=1)
def _text_encoder_tflops() -> float:
    return workload.text_encoder_tflops(workload.MAX_CAPTION_TOKENS)


# ---------------------------------------------------------------------------------------------
# Latency: columns are seconds at 100% efficiency; column 0 is a fixed overhead.
#
# A run of S steps takes text_encode + first_step_extra + S x denoise_step + vae_decode + other:
# the first denoise step carries model-offload transfers (the probe times it apart), and `other`
# is the rest of a pipeline call (latents, image post-processing on the host, offload hooks).
# With CFG the positive and negative captions differ in length, so the batch's attention is
# masked and cannot take the unmasked kernels: `cfg_attention` is its extra time, a second
# coefficient on the same seconds at the attention rate.

LATENCY_FEATURES = {
    "text_encode": ("overhead", "compute", "hbm", "host_copy"),
    "denoise_step": ("overhead", "matmul", "attention", "hbm", "host_copy", "cfg_attention"),
    "first_step_extra": ("overhead", "host_copy"),
    "vae_decode": ("overhead", "compute", "hbm", "host_copy"),
    "other": ("overhead", "host_pixels", "host_copy"),
}
# Weights moved between host and GPU in each stage of a call. Model offload (accelerate hooks)
# moves a component in when it runs and the previous one out; the call ends with all offloaded.
# Sequential offload streams each component's layers in on every forward.
HOST_COPIES = {
    "model": {"text_encode": ("text_encoder",), "denoise_step": (),
              "first_step_extra": ("text_encoder", "transformer"),
              "vae_decode": ("transformer", "vae"), "other": ("vae",)},
    "sequential": {"text_encode": ("text_encoder",), "denoise_step": ("transformer",),
                   "first_step_extra": (), "vae_decode": ("vae",), "other": ()},
}
HOST_PIXEL_SCALE = 1e9  # host post-processing feature in gigapixels


def _host_copy_bytes(row: dict, stage: str) -> float:
    if row["offload"] == "none":
        return 0.0
    wb = weight_bytes(row)
    return float(sum(wb[c] for c in HOST_COPIES[row["offload"]][stage]))


def _latency_row(row: dict, stage: str) -> tuple:
    peak = row["tflops"]
    bw = row["bandwidth_gbs"] * 1e9
    host_copy = _host_copy_bytes(row, stage) / (row["pcie_gbs"] * 1e9)
    batch, elem = row["batch"], element_bytes(row["precision"])
    wb = weight_bytes(row)
    if stage == "text_encode":  # at the text encoder's precision (its quantization scope)
        prompts = batch * cfg_passes(row["cfg"])
        return (1.0, prompts * _text_encoder_tflops() / row["te_tflops"],
                wb["text_encoder"] / bw, host_copy)
    if stage == "first_step_extra":
        return (1.0, host_copy)
    pixels = batch * row["height"] * row["width"]
    if stage == "other":
        return (1.0, pixels / HOST_PIXEL_SCALE, host_copy)
    costs = shape_costs(row["height"], row["width"], row["caption_tokens"])
    if stage == "denoise_step":
        images = batch * cfg_passes(row["cfg"])
        t = _arch().transformer
        layers = t.n_layers + 2 * t.n_refiner_layers
        activations = images * costs["seq_tokens"] * t.dim * layers * elem
        activations *= TRANSFORMER_ACTIVATION_PASSES
        matmul = costs["forward_tflops"] - costs["attention_tflops"]
        attention = images * costs["attention_tflops"] / row["attention_tflops"]
        return (1.0, images * matmul / peak, attention, (wb["transformer"] + activations) / bw,
                host_copy, attention if row["cfg"] else 0.0)
    if stage == "vae_decode":  # the VAE is never quantized: its convolutions run at its dtype
        return (1.0, batch * costs["vae_tflops"] / row["dtype_tflops"],
                (wb["vae"] + pixels * VAE_ELEMENTS_PER_PIXEL * elem) / bw, host_copy)
    raise ValueError(f"unknown latency stage {stage!r}")


def latency_design(rows: list[dict], stage: str) -> np.ndarray:
    """(n_rows, n_features) matrix for one latency stage; see LATENCY_FEATURES."""
    if not rows:
        return np.zeros((0, len(LATENCY_FEATURES[stage])))
    return np.array([_latency_row(r, stage) for r in rows], dtype=float)


# ---------------------------------------------------------------------------------------------
# Memory (MiB). Torch's peak allocated memory of a stage = what is resident when it runs (known
# from the offload mode) + fitted workspace (column 0) + fitted activation coefficients, >= 0
# but for the VAE's batch-1 term; the predictor (advisor.predictors.MemoryPredictor) bounds each
# stage's peak below by handoff_mib (the resident weights, or model offload's hand-over), so no
# prediction falls under them. NVML's used memory adds what the caching allocator keeps
# reserved (fragments it holds while memory is free) and the CUDA context; it is modelled
# apart, from the stages' activations.

MEMORY_FEATURES = {
    "text_encode": ("workspace", "tokens"),
    "denoise": ("workspace", "tokens", "attention_scores"),
    "vae_decode": ("workspace", "pixels", "pixels_chunked", "batch1_pixels", "attention_scores"),
}
STAGE_COMPONENT = {"text_encode": "text_encoder", "denoise": "transformer", "vae_decode": "vae"}
# NVML used above the placement's weights: the CUDA context and fixed buffers, then what the
# caching allocator keeps reserved per MiB of each stage's peak activations (blocks cached for
# one stage's tensors are of the wrong sizes for the next, so the reserve grows with all three).
NVML_FEATURES = ("context", "text_encode", "denoise", "vae_decode")


@lru_cache(maxsize=16)
def largest_layer_mib(component: str, precision: str) -> float:
    """Weights of a component's largest layer: what sequential offload streams in at once (the
    text encoder's token-embedding table, a transformer feed-forward matrix, a VAE 3x3 conv)."""
    arch = _arch()
    params = {"text_encoder": arch.text_encoder.vocab_size * arch.text_encoder.hidden_size,
              "transformer": arch.transformer.dim * arch.transformer.ffn_dim,
              "vae": max(arch.vae.block_out_channels) ** 2 * 9}[component]
    return params * element_bytes(precision) / MIB


def resident_weights_mib(row: dict, stage: str) -> float:
    """Weights on the GPU while `stage` runs: all of them without offload, the running component
    with model offload, its largest layer with sequential offload."""
    wb = weight_bytes(row)
    if row["offload"] == "none":
        return wb["total"] / MIB
    if row["offload"] == "model":
        return wb[STAGE_COMPONENT[stage]] / MIB
    return largest_layer_mib(STAGE_COMPONENT[stage], row["precision"])


def handoff_mib(row: dict, stage: str) -> float:
    """The floor of a stage's peak: its resident weights, or with model offload at the VAE, the
    transformer and the VAE together (the transformer leaves only once the VAE has moved in)."""
    if row["offload"] == "model" and stage == "vae_decode":
        wb = weight_bytes(row)
        return (wb["transformer"] + wb["vae"]) / MIB
    return resident_weights_mib(row, stage)


def placement_weights_mib(row: dict) -> float:
    """Most weights on the GPU at once over a run (the NVML model's known part)."""
    return max(handoff_mib(row, stage) for stage in STAGE_COMPONENT)


@lru_cache(maxsize=1)
def int32_pixels() -> int:
    """Decoded pixels (batch x height x width) beyond which the VAE decoder's largest
    full-resolution tensor (the upsampled input of its last up-block) has more than 2^31
    elements: past it, PyTorch runs those convolutions in chunks, so activation memory grows
    more slowly with the batch (measured: ~2.1 GB per megapixel below, ~1.6 above)."""
    return (2**31 - 1) // _arch().vae.block_out_channels[1]


def _memory_row(row: dict, stage: str) -> tuple:
    batch, elem = row["batch"], element_bytes(row["precision"])
    images = batch * cfg_passes(row["cfg"])
    if stage == "text_encode":
        return (1.0, images * workload.MAX_CAPTION_TOKENS * elem / MIB)
    costs = shape_costs(row["height"], row["width"], row["caption_tokens"])
    if stage == "denoise":
        seq = costs["seq_tokens"]
        return (1.0, images * seq * elem / MIB, images * seq**2 * elem / MIB)
    if stage == "vae_decode":
        latent = costs["latent_pixels"]
        image = row["height"] * row["width"]
        whole = min(batch * image, int32_pixels())
        # cuDNN takes another convolution path at batch 1, with a workspace that grows with the
        # image (measured: ~0.4 GB more per megapixel than one image of a larger batch).
        return (1.0, whole * elem / MIB, (batch * image - whole) * elem / MIB,
                (image * elem / MIB) if batch == 1 else 0.0, batch * latent**2 * elem / MIB)
    raise ValueError(f"unknown memory stage {stage!r}")


def memory_design(rows: list[dict], stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, resident weights, floor of the peak), MiB, for one stage; see
    MEMORY_FEATURES."""
    if not rows:
        return np.zeros((0, len(MEMORY_FEATURES[stage]))), np.zeros(0), np.zeros(0)
    X = np.array([_memory_row(r, stage) for r in rows], dtype=float)
    return (X, np.array([resident_weights_mib(r, stage) for r in rows], dtype=float),
            np.array([handoff_mib(r, stage) for r in rows], dtype=float))


def nvml_design(activations: np.ndarray, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(features, placement weights MiB) of the NVML model, from each stage's peak activations
    (n, 3) MiB in MEMORY_STAGES order; see NVML_FEATURES."""
    X = np.column_stack([np.ones(len(rows)), np.reshape(activations, (len(rows), -1))])
    return X, np.array([placement_weights_mib(r) for r in rows], dtype=float)
