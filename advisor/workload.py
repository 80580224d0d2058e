"""Z-Image-Turbo cost model from the shipped architecture configs (data/zimage_turbo/). No torch.

Each model is described once, as a list of `Op`s (a layer's parameters and the multiply-accumulates
it runs for given sequence lengths or pixel counts); parameter counts, weight bytes and FLOPs are
all sums over those lists, so they cannot disagree with each other.

FLOPs follow torch's FlopCounterMode: only matmuls, convolutions and scaled-dot-product attention
count (norms, activations, rotary products, up-sampling and biases do not), at 2 FLOPs per
multiply-accumulate.
Attention counts the full (padded) score matrix, as FlopCounterMode does, masked or causal or not.

Sequence lengths follow diffusers' ZImageTransformer2DModel: the image tokens, (H/16) x (W/16), and
the caption tokens are each padded up to a multiple of 32; the noise refiner sees the padded image
tokens, the context refiner the padded caption tokens, and the main layers both, concatenated.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from advisor import ARCH_DIR, REPO_ROOT
from advisor.contract import QUANT_SCOPES, QUANTIZATIONS, cfg_passes, dtype_of, quantized_parts
from advisor.errors import AdvisorError, shown

PIXELS_PER_TOKEN = 16  # the VAE downsamples 8x, the transformer patchifies 2x2 latents
SEQ_MULTIPLE = 32  # diffusers pads caption and image token sequences to a multiple of this
MAX_CAPTION_TOKENS = 512  # the pipeline's max_sequence_length: the prompt is padded/truncated to it
TIMESTEP_FREQ_DIM = 256  # sinusoidal timestep features fed to the timestep MLP
TIMESTEP_MID_DIM = 1024  # hidden width of the timestep MLP
ADALN_MAX_DIM = 256  # adaLN modulation input width is min(dim, 256)

# Bits per weight. fp32-tf32 keeps fp32 weights (TF32 only changes how matmuls run).
# Below 16 bits only `Op.low_precision` weights shrink; see `weight_bytes`. A quantized precision
# (contract.QUANTIZATIONS) stores its weights as its `weights` key says.
WEIGHT_BITS = {"bf16": 16, "fp16": 16, "fp32": 32, "fp32-tf32": 32, "fp8": 8, "int8": 8, "int4": 4}
PRECISIONS = tuple(WEIGHT_BITS)
COMPONENTS = ("transformer", "text_encoder", "vae")
EXPECTED_CLASSES = {
    "transformer": "ZImageTransformer2DModel",
    "text_encoder": "Qwen3Model",
    "vae": "AutoencoderKL",
    "scheduler": "FlowMatchEulerDiscreteScheduler",
}


# ---------------------------------------------------------------------------------------------
# Architecture: the config fields the cost model uses, validated.


@dataclass(frozen=True)
class TransformerArch:
    dim: int
    n_heads: int
    n_layers: int
    n_refiner_layers: int
    in_channels: int
    patch_size: int
    f_patch_size: int
    cap_feat_dim: int
    qk_norm: bool
    axes_lens: tuple[int, ...]  # RoPE positions per axis: (caption/frame, height, width) tokens

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return int(self.dim / 3 * 8)  # diffusers' FeedForward hidden width

    @property
    def adaln_dim(self) -> int:
        return min(self.dim, ADALN_MAX_DIM)

    @property
    def max_side_px(self) -> tuple[int, int]:
        """Largest (height, width): the RoPE table has no position past axes_lens tokens."""
        return self.axes_lens[1] * PIXELS_PER_TOKEN, self.axes_lens[2] * PIXELS_PER_TOKEN

    @property
    def patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.f_patch_size * self.in_channels


@dataclass(frozen=True)
class TextEncoderArch:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    attention_bias: bool


@dataclass(frozen=True)
class VaeArch:
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    in_channels: int
    out_channels: int
    latent_channels: int
    mid_block_add_attention: bool
    use_quant_conv: bool
    use_post_quant_conv: bool

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclass(frozen=True)
class Architecture:
    transformer: TransformerArch
    text_encoder: TextEncoderArch
    vae: VaeArch
    source: Path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdvisorError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise AdvisorError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise AdvisorError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _field(cfg: dict, path: Path, key: str, kind: type):
    """cfg[key] checked against `kind` (int: a positive int); AdvisorError names file and field."""
    if key not in cfg:
        raise AdvisorError(f"{path}: missing field {key!r}")
    value = cfg[key]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        expected = "a positive integer"
    elif kind is bool:
        ok = isinstance(value, bool)
        expected = "true or false"
    else:  # tuple of positive ints
        ok = isinstance(value, list) and bool(value) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        )
        expected = "a non-empty list of positive integers"
    if not ok:
        raise AdvisorError(f"{path}: field {key!r}: expected {expected}, found {value!r}")
    return tuple(value) if kind is tuple else value


def _transformer_arch(path: Path) -> TransformerArch:
    cfg = _read_json(path)
    patch = _field(cfg, path, "all_patch_size", tuple)
    f_patch = _field(cfg, path, "all_f_patch_size", tuple)
    if len(patch) != 1 or len(f_patch) != 1:
        raise AdvisorError(
            f"{path}: fields 'all_patch_size'/'all_f_patch_size': the cost model handles one patch "
            f"size, found {list(patch)}/{list(f_patch)}"
        )
    if cfg.get("siglip_feat_dim") is not None:
        raise AdvisorError(f"{path}: field 'siglip_feat_dim': the Omni variant is not modelled")
    arch = TransformerArch(
        dim=_field(cfg, path, "dim", int),
        n_heads=_field(cfg, path, "n_heads", int),
        n_layers=_field(cfg, path, "n_layers", int),
        n_refiner_layers=_field(cfg, path, "n_refiner_layers", int),
        in_channels=_field(cfg, path, "in_channels", int),
        patch_size=patch[0],
        f_patch_size=f_patch[0],
        cap_feat_dim=_field(cfg, path, "cap_feat_dim", int),
        qk_norm=_field(cfg, path, "qk_norm", bool),
        axes_lens=_field(cfg, path, "axes_lens", tuple),
    )
    if len(arch.axes_lens) != 3:
        raise AdvisorError(f"{path}: field 'axes_lens': expected 3 lengths (caption, height, "
                           f"width), found {list(arch.axes_lens)}")
    if arch.dim % arch.n_heads:
        raise AdvisorError(
            f"{path}: field 'dim': {arch.dim} is not divisible by n_heads {arch.n_heads}"
        )
    return arch


def _text_encoder_arch(path: Path) -> TextEncoderArch:
    cfg = _read_json(path)
    arch = TextEncoderArch(
        hidden_size=_field(cfg, path, "hidden_size", int),
        num_hidden_layers=_field(cfg, path, "num_hidden_layers", int),
        num_attention_heads=_field(cfg, path, "num_attention_heads", int),
        num_key_value_heads=_field(cfg, path, "num_key_value_heads", int),
        head_dim=_field(cfg, path, "head_dim", int),
        intermediate_size=_field(cfg, path, "intermediate_size", int),
        vocab_size=_field(cfg, path, "vocab_size", int),
        attention_bias=_field(cfg, path, "attention_bias", bool),
    )
    if arch.num_attention_heads % arch.num_key_value_heads:
        raise AdvisorError(
            f"{path}: field 'num_key_value_heads': {arch.num_key_value_heads} does not divide "
            f"num_attention_heads {arch.num_attention_heads}"
        )
    return arch


def _vae_arch(path: Path) -> VaeArch:
    cfg = _read_json(path)
    channels = _field(cfg, path, "block_out_channels", tuple)
    blocks = (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D"))
    for key, block in blocks:
        if cfg.get(key) != [block] * len(channels):
            raise AdvisorError(
                f"{path}: field {key!r}: expected {len(channels)} x {block!r} (one per "
                f"block_out_channels entry), found {cfg.get(key)!r}"
            )
    return VaeArch(
        block_out_channels=channels,
        layers_per_block=_field(cfg, path, "layers_per_block", int),
        in_channels=_field(cfg, path, "in_channels", int),
        out_channels=_field(cfg, path, "out_channels", int),
        latent_channels=_field(cfg, path, "latent_channels", int),
        mid_block_add_attention=_field(cfg, path, "mid_block_add_attention", bool),
        use_quant_conv=_field(cfg, path, "use_quant_conv", bool),
        use_post_quant_conv=_field(cfg, path, "use_post_quant_conv", bool),
    )


def _check_classes(path: Path) -> None:
    index = _read_json(path / "model_index.json")
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
    found = {name: (index.get(name) or [None, None])[-1] for name in COMPONENTS}
    found["scheduler"] = scheduler.get("_class_name")
    for name, expected in EXPECTED_CLASSES.items():
        if found[name] != expected:
            raise AdvisorError(
                f"{path}: component {name!r}: expected class {expected!r}, found {found[name]!r}"
            )


def load_architecture(path: str | Path = ARCH_DIR) -> Architecture:
    """The five configs under `path`, validated; AdvisorError names the file and field."""
    path = Path(path)
    _check_classes(path)
    arch = Architecture(
        transformer=_transformer_arch(path / "transformer" / "config.json"),
        text_encoder=_text_encoder_arch(path / "text_encoder" / "config.json"),
        vae=_vae_arch(path / "vae" / "config.json"),
        source=path,
    )
    pixels = arch.vae.scale_factor * arch.transformer.patch_size
    if pixels != PIXELS_PER_TOKEN:
        raise AdvisorError(
            f"{path}: one image token covers {pixels} pixels (VAE x{arch.vae.scale_factor}, patch "
            f"{arch.transformer.patch_size}); the cost model assumes {PIXELS_PER_TOKEN}"
        )
    return arch


@lru_cache(maxsize=1)
def _shipped_architecture() -> Architecture:
    return load_architecture(ARCH_DIR)


def _arch(arch: Architecture | None) -> Architecture:
    return _shipped_architecture() if arch is None else arch


# ---------------------------------------------------------------------------------------------
# Ops: one layer's parameters and multiply-accumulates.


@dataclass(frozen=True)
class Op:
    params: int = 0
    macs: int = 0  # multiply-accumulates FlopCounterMode sees (matmul, conv, SDPA)
    low_precision: int = 0  # weights that fp8/int8/int4 store at low precision


def linear(
    fan_in: int, fan_out: int, tokens: int, bias: bool = True, quantized: bool = False
) -> Op:
    n = fan_in * fan_out
    return Op(n + bias * fan_out, tokens * n, n if quantized else 0)


def conv(c_in: int, c_out: int, kernel: int, out_pixels: int) -> Op:
    n = c_in * c_out * kernel * kernel
    return Op(n + c_out, out_pixels * n)


def sdpa(heads: int, q_len: int, kv_len: int, head_dim: int) -> Op:
    return Op(macs=2 * heads * q_len * kv_len * head_dim)  # Q @ K^T and P @ V


def weights(n: int) -> Op:
    """Parameters with no matmul: norms, embedding tables, pad tokens."""
    return Op(params=n)


def _pad(tokens: int) -> int:
    return -(-tokens // SEQ_MULTIPLE) * SEQ_MULTIPLE


def _dit_block(t: TransformerArch, tokens: int, modulated: bool) -> list[Op]:
    d, f = t.dim, t.ffn_dim
    # q, k, v, out: diffusers gives k and v all n_heads (config n_kv_heads is unused).
    ops = [linear(d, d, tokens, bias=False, quantized=True) for _ in range(4)]
    ops.append(sdpa(t.n_heads, tokens, tokens, t.head_dim))
    ops += [weights(t.head_dim)] * (2 if t.qk_norm else 0)
    ops += [linear(d, f, tokens, bias=False, quantized=True) for _ in range(2)]  # w1, w3
    ops.append(linear(f, d, tokens, bias=False, quantized=True))  # w2
    ops += [weights(d)] * 4  # attention/ffn RMSNorms, before and after
    if modulated:  # one scale/gate vector per image, from the timestep embedding
        ops.append(linear(t.adaln_dim, 4 * d, 1, quantized=True))
    return ops


def transformer_ops(t: TransformerArch, image_len: int, caption_len: int) -> list[Op]:
    """One forward for one image; lengths are already padded to SEQ_MULTIPLE."""
    ops = [
        linear(TIMESTEP_FREQ_DIM, TIMESTEP_MID_DIM, 1),  # timestep MLP
        linear(TIMESTEP_MID_DIM, t.adaln_dim, 1),
        linear(t.patch_dim, t.dim, image_len),  # x_embedder
        weights(t.cap_feat_dim),  # cap_embedder RMSNorm
        linear(t.cap_feat_dim, t.dim, caption_len),
        weights(2 * t.dim),  # x and caption pad tokens
        linear(t.adaln_dim, t.dim, 1),  # final layer modulation
        linear(t.dim, t.patch_dim, image_len + caption_len),  # final projection, whole sequence
    ]
    for _ in range(t.n_refiner_layers):
        ops += _dit_block(t, image_len, modulated=True)  # noise refiner
        ops += _dit_block(t, caption_len, modulated=False)  # context refiner
    for _ in range(t.n_layers):
        ops += _dit_block(t, image_len + caption_len, modulated=True)
    return ops


def text_encoder_ops(te: TextEncoderArch, seq_len: int) -> list[Op]:
    """Qwen3Model (no LM head) on one prompt of seq_len tokens. Every layer runs even though the
    pipeline keeps hidden_states[-2]: transformers does not stop early."""
    h, s, b = te.hidden_size, seq_len, te.attention_bias
    q_dim, kv_dim = te.num_attention_heads * te.head_dim, te.num_key_value_heads * te.head_dim
    layer = [
        linear(h, q_dim, s, b, True),
        linear(h, kv_dim, s, b, True),
        linear(h, kv_dim, s, b, True),
        linear(q_dim, h, s, b, True),
        weights(te.head_dim),  # q_norm
        weights(te.head_dim),  # k_norm
        sdpa(te.num_attention_heads, s, s, te.head_dim),
        linear(h, te.intermediate_size, s, False, True),  # gate
        linear(h, te.intermediate_size, s, False, True),  # up
        linear(te.intermediate_size, h, s, False, True),  # down
        weights(2 * h),  # input and post-attention RMSNorms
    ]
    rope = Op(macs=te.head_dim // 2 * s)  # rotary angles: a (head_dim/2 x 1) @ (1 x s) matmul, once
    return [weights(te.vocab_size * h), rope] + layer * te.num_hidden_layers + [weights(h)]


def _resnet(c_in: int, c_out: int, pixels: int) -> list[Op]:
    ops = [weights(2 * c_in), conv(c_in, c_out, 3, pixels)]  # GroupNorm, conv
    ops += [weights(2 * c_out), conv(c_out, c_out, 3, pixels)]
    if c_in != c_out:
        ops.append(conv(c_in, c_out, 1, pixels))  # shortcut
    return ops


def _vae_mid_block(v: VaeArch, pixels: int) -> list[Op]:
    c = v.block_out_channels[-1]
    ops = _resnet(c, c, pixels)
    if v.mid_block_add_attention:  # one head over all latent pixels
        ops += [weights(2 * c)] + [linear(c, c, pixels) for _ in range(4)]  # GroupNorm, q k v out
        ops.append(sdpa(1, pixels, pixels, c))
    return ops + _resnet(c, c, pixels)


def vae_decoder_ops(v: VaeArch, latent_pixels: int) -> list[Op]:
    """Decoder on one latent of `latent_pixels`; each up-sampler's conv runs at 4x the pixels."""
    channels = list(reversed(v.block_out_channels))
    px = latent_pixels
    ops = [conv(v.latent_channels, v.latent_channels, 1, px)] if v.use_post_quant_conv else []
    ops += [conv(v.latent_channels, channels[0], 3, px)] + _vae_mid_block(v, px)
    prev = channels[0]
    for i, c in enumerate(channels):
        for j in range(v.layers_per_block + 1):
            ops += _resnet(prev if j == 0 else c, c, px)
        prev = c
        if i < len(channels) - 1:
            px *= 4
            ops.append(conv(c, c, 3, px))
    return ops + [weights(2 * channels[-1]), conv(channels[-1], v.out_channels, 3, px)]


def vae_encoder_ops(v: VaeArch) -> list[Op]:
    """Encoder parameters only (text-to-image never encodes, so no pixels)."""
    channels = v.block_out_channels
    ops = [conv(v.in_channels, channels[0], 3, 0)]
    prev = channels[0]
    for i, c in enumerate(channels):
        for j in range(v.layers_per_block):
            ops += _resnet(prev if j == 0 else c, c, 0)
        prev = c
        if i < len(channels) - 1:
            ops.append(conv(c, c, 3, 0))  # stride-2 down-sampler
    ops += _vae_mid_block(v, 0) + [weights(2 * channels[-1])]
    ops.append(conv(channels[-1], 2 * v.latent_channels, 3, 0))  # mean and log-variance
    if v.use_quant_conv:
        ops.append(conv(2 * v.latent_channels, 2 * v.latent_channels, 1, 0))
    return ops


def _component_ops(arch: Architecture) -> dict[str, list[Op]]:
    """Each component at any shape: parameters do not depend on it."""
    return {
        "transformer": transformer_ops(arch.transformer, SEQ_MULTIPLE, SEQ_MULTIPLE),
        "text_encoder": text_encoder_ops(arch.text_encoder, 1),
        "vae": vae_encoder_ops(arch.vae) + vae_decoder_ops(arch.vae, 1),
    }


def _tflops(ops: list[Op]) -> float:
    return 2 * sum(op.macs for op in ops) / 1e12


# ---------------------------------------------------------------------------------------------
# Public API (docs/internals.md).


def check_shape(height: int, width: int) -> None:
    """AdvisorError unless both are positive multiples of 16 within the transformer's RoPE
    table (8192 px a side for Z-Image-Turbo: 512 positions of 16 px)."""
    check_side("height", height)
    check_side("width", width)


def check_side(axis: str, value, name: str | None = None) -> None:
    """One side ("height" or "width"); the message starts with `name` (default `axis`)."""
    name = name or axis
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 \
            or value % PIXELS_PER_TOKEN:
        raise AdvisorError(f"{name}: expected a positive multiple of {PIXELS_PER_TOKEN} pixels "
                           f"(VAE 8x times 2x2 patches), got {shown(value)}")
    limits = _shipped_architecture().transformer.max_side_px
    limit = limits[0] if axis == "height" else limits[1]
    if value > limit:
        raise AdvisorError(f"{name}: expected at most {limit} pixels, got {shown(value)}: the "
                           f"transformer's rotary position table (axes_lens) covers "
                           f"{limit // PIXELS_PER_TOKEN} tokens of {PIXELS_PER_TOKEN} px a side, "
                           "so larger images cannot be generated")


def _check_count(name: str, value: int, low: int = 1, high: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        span = f"{low}..{high}" if high else f">= {low}"
        raise AdvisorError(f"{name}: expected an integer {span}, got {value!r}")


def param_counts(arch: Architecture | None = None) -> dict[str, int]:
    return {name: sum(op.params for op in ops) for name, ops in _component_ops(_arch(arch)).items()}


def weight_bytes(precision: str, arch: Architecture | None = None,
                 quant_scope: str = QUANT_SCOPES[0]) -> dict[str, int]:
    """Bytes of weights per component at `precision`: one of PRECISIONS, or a quantized
    precision (stored as its `weights` key: fp8 and fp8-wo as fp8, int8-wo as int8) on the
    components its `quant_scope` names (contract.quantized_parts; the others at its dtype).

    fp8, int8 and int4 (1, 1 and 0.5 byte) apply to the weight matrices of the Linear layers inside
    the transformer blocks (attention, feed-forward, adaLN) and the text encoder's decoder layers:
    99.8% of the transformer's parameters, 90% of the text encoder's. Everything else (embedders,
    final layer, norms, biases, the token-embedding table, the whole VAE) stays bf16.
    Quantization scales are not counted (<0.1%)."""
    storage = QUANTIZATIONS[precision].weights if precision in QUANTIZATIONS else precision
    if storage not in WEIGHT_BITS:
        names = dict.fromkeys([*PRECISIONS, *QUANTIZATIONS])
        raise AdvisorError(f"precision: expected one of {', '.join(names)}, got {precision!r}")
    parts, out = quantized_parts(precision, quant_scope) if precision in QUANTIZATIONS else None, {}
    for name, ops in _component_ops(_arch(arch)).items():
        bits = WEIGHT_BITS[storage if parts is None or name in parts else dtype_of(precision)]
        total, low = sum(op.params for op in ops), sum(op.low_precision for op in ops)
        out[name] = total * bits // 8 if bits >= 16 else (low * bits + (total - low) * 16) // 8
    out["total"] = sum(out.values())
    return out


def image_tokens(height: int, width: int) -> int:
    check_shape(height, width)
    return (height // PIXELS_PER_TOKEN) * (width // PIXELS_PER_TOKEN)


def padded_caption_tokens(caption_tokens: int) -> int:
    """Caption tokens the transformer computes on: the prompt's padded to a multiple of 32."""
    _check_count("caption_tokens", caption_tokens, 1, MAX_CAPTION_TOKENS)
    return _pad(caption_tokens)


def transformer_tflops_per_forward(
    height: int, width: int, caption_tokens: int = 64, arch: Architecture | None = None
) -> float:
    """One transformer forward for one image; `caption_tokens` before padding."""
    ops = transformer_ops(
        _arch(arch).transformer,
        _pad(image_tokens(height, width)),
        padded_caption_tokens(caption_tokens),
    )
    return _tflops(ops)


def text_encoder_tflops(
    seq_len: int = MAX_CAPTION_TOKENS, arch: Architecture | None = None
) -> float:
    """One prompt through the text encoder; the pipeline pads every prompt to 512 tokens."""
    _check_count("seq_len", seq_len)
    return _tflops(text_encoder_ops(_arch(arch).text_encoder, seq_len))


def vae_decode_tflops(height: int, width: int, arch: Architecture | None = None) -> float:
    """VAE decode of one image to height x width pixels."""
    check_shape(height, width)
    v = _arch(arch).vae
    return _tflops(vae_decoder_ops(v, (height // v.scale_factor) * (width // v.scale_factor)))


def transformer_forwards(steps: int, cfg: bool) -> int:
    """Transformer forwards per image in a run of `steps` steps.

    diffusers 0.42 ZImagePipeline runs one forward per scheduler timestep, and with
    num_inference_steps=S it builds exactly S timesteps, so a 9-step run is 9 forwards. With
    guidance (guidance_scale > 0) each step runs the batch twice (prompt and negative prompt,
    concatenated), so each image costs two forwards a step.
    """
    _check_count("steps", steps)
    return steps * cfg_passes(cfg)


def workload_summary(
    height: int,
    width: int,
    batch: int = 1,
    steps: int = 9,
    caption_tokens: int = 64,
    cfg: bool = False,
    arch: Architecture | None = None,
) -> dict:
    """What `advisor workload --format json` prints. Per-image figures plus batch totals.

    With CFG the negative prompt is encoded too (text encoder twice) and padded to the prompt's
    length in the transformer batch, so it costs as much as the prompt (assuming it is no longer).
    """
    arch = _arch(arch)
    check_shape(height, width)
    _check_count("batch", batch)
    caption = padded_caption_tokens(caption_tokens)
    tokens = image_tokens(height, width)
    forwards = transformer_forwards(steps, cfg)
    te_passes = cfg_passes(cfg)
    per_forward = transformer_tflops_per_forward(height, width, caption_tokens, arch)
    stages = {
        "text_encode": te_passes * text_encoder_tflops(MAX_CAPTION_TOKENS, arch),
        "denoise": forwards * per_forward,
        "vae_decode": vae_decode_tflops(height, width, arch),
    }
    stages["total"] = sum(stages.values())
    return {
        "height": height,
        "width": width,
        "batch": batch,
        "steps": steps,
        "cfg": cfg,
        "params": param_counts(arch),
        "image_tokens": tokens,
        "caption_tokens": caption,
        "sequence_length": _pad(tokens) + caption,
        "text_encoder_seq_len": MAX_CAPTION_TOKENS,
        "text_encoder_passes": te_passes,
        "transformer_tflops_per_forward": per_forward,
        "transformer_forwards": forwards,
        "text_encoder_tflops": text_encoder_tflops(MAX_CAPTION_TOKENS, arch),
        "vae_decode_tflops": stages["vae_decode"],
        "total_tflops_per_image": stages["total"],
        "tflops_per_image": stages,
        "tflops_per_batch": {stage: batch * value for stage, value in stages.items()},
        "weight_gb": {
            p: {k: b / 1e9 for k, b in weight_bytes(p, arch).items()} for p in PRECISIONS
        },
        "source": _source(arch),
    }


def _source(arch: Architecture) -> str:
    path = arch.source.resolve()
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    return (
        f"spec-derived: analytic count from the configs in {shown}/ (FLOPs as torch "
        "FlopCounterMode counts them: matmul, conv, SDPA; 2 per multiply-accumulate)"
    )
