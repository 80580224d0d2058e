"""Load a ZImagePipeline to probe: pretrained weights when a snapshot is at hand, else the exact
architecture of data/zimage_turbo/ with synthetic weights, built in the target dtype (no fp32 copy
is ever made) on the GPU (its init of 10B parameters takes seconds; on the host it took minutes)
and moved to the host for the offload settings, or built on the host for an offload setting
under a memory cap, so that such a load never needs the whole model on the GPU.

Peak memory and dense-kernel time depend on shapes and dtypes, not on weight values, so synthetic
weights give the real sizing figures; every record still says which weights it used.
"""
from __future__ import annotations

import contextlib
import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import Qwen3Config, Qwen3Model

from advisor import ARCH_DIR
from advisor.contract import (
    ATTENTION_BACKENDS,
    QUANT_SCOPES,
    QUANTIZATIONS,
    SINGLE_GPU,
    SPLIT_MODES,
    Parallel,
    dtype_of,
    quantized_parts,
)
from advisor.errors import AdvisorError
from probes.meters import Sampler
from probes.tokenizer import WORDS, word_tokenizer

HF_REPO = "Tongyi-MAI/Z-Image-Turbo"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
          "fp32-tf32": torch.float32}
# Regional compile specialises on shapes; a sweep visits more shapes than dynamo's default limit.
RECOMPILE_LIMIT = 64

# --tiny: the same classes with tiny dimensions, for CPU tests. The VAE keeps four blocks so that
# it still downsamples 8x (tokens are still (H/16) x (W/16)); head_dim 32 = sum(axes_dims). Two
# refiner layers, as the real model: cache-dit's context-parallel plan hooks the first and the
# last apart (probes.split).
TINY = {
    "transformer": {"dim": 64, "n_heads": 2, "n_kv_heads": 2, "n_layers": 2, "n_refiner_layers": 2,
                    "axes_dims": [8, 12, 12], "cap_feat_dim": 32},
    "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                     "vocab_size": len(WORDS), "bos_token_id": None, "eos_token_id": None},
    "vae": {"block_out_channels": [4, 4, 4, 4], "layers_per_block": 1, "norm_num_groups": 2},
}
CONFIG_FILES = {"transformer": "transformer/config.json", "text_encoder": "text_encoder/config.json",
                "vae": "vae/config.json", "scheduler": "scheduler/scheduler_config.json"}


@dataclass(frozen=True)
class LoadKey:
    """What needs a fresh pipeline when it changes. fp32 and fp32-tf32 share weights (TF32 is a
    global matmul flag); a quantized precision is a bf16 pipeline quantized after it is placed;
    the attention backend is switched in place; a transformer split across GPUs (`split`, one
    image over several: probes.split) is its own pipeline, and so is each compile mode, compiled
    or channels-last VAE and quantization scope (they are set when the pipeline is placed)."""
    dtype: str
    compile: bool
    offload: str
    quantization: str | None = None  # a QUANTIZATIONS key
    split: Parallel = SINGLE_GPU
    quant_scope: str = QUANT_SCOPES[0]
    compile_mode: str = "default"
    vae_compile: bool = False
    vae_channels_last: bool = False

    @classmethod
    def of(cls, config) -> "LoadKey":
        dtype = "fp32" if config.precision == "fp32-tf32" else dtype_of(config.precision)
        quantization = config.precision if config.precision in QUANTIZATIONS else None
        split = config.parallel if config.parallel.mode in SPLIT_MODES else SINGLE_GPU
        return cls(dtype, config.compile, config.offload, quantization, split,
                   config.quant_scope, config.compile_mode, config.vae_compile,
                   config.vae_channels_last)

    @property
    def compiled(self) -> bool:
        return self.compile or self.vae_compile


@dataclass
class Loaded:
    pipe: ZImagePipeline
    key: LoadKey
    architecture: str  # "z-image-turbo" | "tiny"
    weights: str  # "synthetic" | "pretrained"
    source: str
    load_s: float
    host_rss_peak_mb: float
    # None until set: a fresh model follows diffusers' global active backend, which the
    # previous pipeline may have left on cudnn or flash.
    attention: str | None = None
    quantization: dict | None = None  # the record's `quantization` block (probes.quantize)


def find_weights(choice: str, allow_download: bool) -> Path | None:
    """The pretrained snapshot to load, or None for synthetic weights.

    `choice` is "synthetic", "auto" (a local Hugging Face snapshot of Z-Image-Turbo if one is
    cached, downloaded only with allow_download) or a folder holding a saved pipeline.
    """
    if choice == "synthetic":
        return None
    if choice != "auto":
        path = Path(choice)
        if not (path / "model_index.json").is_file():
            raise AdvisorError(f"--weights {choice}: expected a folder with model_index.json "
                               "(a saved ZImagePipeline), or auto, or synthetic")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        return Path(snapshot_download(HF_REPO, local_files_only=not allow_download))
    except LocalEntryNotFoundError:
        return None


def weights_source(weights_path: Path | None, tiny: bool) -> str:
    """Where the weights came from, for records: the snapshot folder, or the configs they were
    built from."""
    if weights_path is not None:
        return str(weights_path)
    return "synthetic: data/zimage_turbo/ configs" + (", tiny dimensions" if tiny else "")


def load(key: LoadKey, device: torch.device, weights_path: Path | None, tiny: bool,
         capped: bool = False) -> Loaded:
    """Build or load the pipeline for `key` and place it (device, offload, compile); `capped`:
    a memory cap is in force."""
    process = psutil.Process()
    rss = Sampler(lambda: {"rss_mb": process.memory_info().rss / 2**20}, interval_s=0.05)
    start = time.perf_counter()
    with rss:
        if weights_path is None:
            on_host = key.offload != "none" and capped
            pipe = build_synthetic(torch.device("cpu") if on_host else device,
                                   DTYPES[key.dtype], tiny)
            if key.offload != "none":
                pipe.to("cpu")  # where the offload hooks expect the weights
                free_memory()
        else:
            pipe = ZImagePipeline.from_pretrained(weights_path, dtype=DTYPES[key.dtype])
        quantization = place(pipe, device, key)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    pipe.set_progress_bar_config(disable=True)
    return Loaded(
        pipe=pipe, key=key, architecture=architecture_of(pipe),
        weights="synthetic" if weights_path is None else "pretrained",
        source=weights_source(weights_path, tiny),
        load_s=time.perf_counter() - start,
        host_rss_peak_mb=max(rss.values("rss_mb")),
        quantization=quantization,
    )


def release(loaded: Loaded | None) -> None:
    """Drop a pipeline and everything compiled for it, and give its memory back."""
    if loaded is None:
        return
    loaded.pipe.remove_all_hooks()
    del loaded.pipe
    if loaded.key.compiled:
        torch._dynamo.reset()
    free_memory()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def recover(loaded: Loaded) -> None:
    """Give the memory of a failed call back (drop the exception before calling this, so that
    its frames no longer hold tensors)."""
    if loaded.key.offload != "none":
        loaded.pipe.maybe_free_model_hooks()  # send the models back to the host
    free_memory()


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def freeze_heap() -> None:
    """Exempt every object alive now from later collections. torch, diffusers and transformers
    leave millions of objects that live to the end of the process; frozen, the full collection
    of each `free_memory` scans only what the sweep made (milliseconds, not ~0.3 s)."""
    gc.collect()
    gc.freeze()


# The config fields that tell the architectures apart (a fine-tuned checkpoint shares them).
ARCHITECTURE_FIELDS = {
    "transformer": ("dim", "n_layers", "n_refiner_layers", "n_heads", "cap_feat_dim", "in_channels"),
    "text_encoder": ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads"),
    "vae": ("block_out_channels", "layers_per_block", "latent_channels"),
}


def architecture_of(pipe: ZImagePipeline) -> str:
    """"z-image-turbo" or "tiny"; AdvisorError for any other model (its records would size nothing)."""
    def fields(configs: dict) -> dict:
        return {(name, key): _plain(configs[name][key])
                for name, keys in ARCHITECTURE_FIELDS.items() for key in keys}

    loaded = {}
    for name in ARCHITECTURE_FIELDS:
        config = getattr(pipe, name).config  # transformers: a PretrainedConfig; diffusers: a dict
        loaded[name] = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for label, tiny in (("z-image-turbo", False), ("tiny", True)):
        if fields(loaded) == fields(component_configs(tiny)):
            return label
    raise AdvisorError("the loaded pipeline is neither Z-Image-Turbo's architecture "
                       f"({ARCH_DIR}) nor the probe's tiny one; the probe measures that model only")


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def component_configs(tiny: bool) -> dict[str, dict]:
    configs = {}
    for name, rel in CONFIG_FILES.items():
        config = json.loads((ARCH_DIR / rel).read_text())
        configs[name] = {**config, **TINY.get(name, {})} if tiny else config
    return configs


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_synthetic(device: torch.device, dtype: torch.dtype, tiny: bool = False) -> ZImagePipeline:
    """The pipeline of the shipped configs with randomly initialised weights, created directly on
    `device` in `dtype`."""
    configs = component_configs(tiny)
    te_config = {k: v for k, v in configs["text_encoder"].items() if k not in ("torch_dtype", "architectures")}
    with torch.device(device), _default_dtype(dtype):
        transformer = ZImageTransformer2DModel.from_config(configs["transformer"])
        text_encoder = Qwen3Model(Qwen3Config(**te_config))
        vae = AutoencoderKL.from_config(configs["vae"])
    for model in (transformer, text_encoder, vae):
        model.eval()
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(configs["scheduler"]),
        vae=vae, text_encoder=text_encoder, tokenizer=word_tokenizer(), transformer=transformer,
    )


def place(pipe: ZImagePipeline, device: torch.device, key: LoadKey) -> dict | None:
    """Move `pipe` to `device` or set its offload, quantize it (the parts its scope names), put
    the VAE in channels-last, mark the transformer's blocks and the VAE decoder for compilation
    (in the key's compile mode); the `quantization` block of a quantized precision, else None.
    Quantizing runs on the device,
    after the bf16 weights are there: a quantized load needs the bf16 pipeline's memory, which a
    run under a memory cap therefore gets only after the load (probes.sweep)."""
    if key.offload == "none":
        pipe.to(device)
    elif key.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif key.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:  # group: one block at a time on the GPU, the next one copied in on a side stream
        pipe.enable_group_offload(onload_device=device, offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=True)
    if not key.split.single:
        from probes.split import enable
        enable(pipe, key.split)
    quantization = None
    if key.quantization:
        from probes.quantize import quantize
        quantization = quantize(pipe, key.quantization, device,
                                quantized_parts(key.quantization, key.quant_scope))
        free_memory()  # the bf16 weights replaced
    if key.vae_channels_last:
        pipe.vae.to(memory_format=torch.channels_last)
    if key.compiled:
        for name in ("recompile_limit", "cache_size_limit"):  # renamed in torch 2.6
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, RECOMPILE_LIMIT)
    mode = None if key.compile_mode == "default" else key.compile_mode
    if key.compile:
        pipe.transformer.compile_repeated_blocks(fullgraph=True, mode=mode)
    if key.vae_compile:
        pipe.vae.decoder.compile(fullgraph=True, mode=mode)
    return quantization


def set_attention(loaded: Loaded, attention: str) -> None:
    """Switch the transformer's attention backend (in place; a no-op when unchanged)."""
    if attention != loaded.attention:
        loaded.pipe.transformer.set_attention_backend(ATTENTION_BACKENDS[attention])
        loaded.attention = attention


def set_vae(loaded: Loaded, mode: str) -> None:
    """Decode in tiles and/or one image at a time, as `mode` (a VAE_MODES value) says. The VAE's
    tiles are its sample_size (1024 px): tiling changes nothing up to 1024x1024."""
    vae, parts = loaded.pipe.vae, mode.split("+")
    vae.enable_tiling() if "tiling" in parts else vae.disable_tiling()
    vae.enable_slicing() if "slicing" in parts else vae.disable_slicing()


def set_tf32(precision: str) -> None:
    """TF32 for fp32 matmuls and convolutions only under `fp32-tf32`; plain fp32 is full IEEE."""
    tf32 = precision == "fp32-tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
