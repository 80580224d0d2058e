"""One image across GPUs: sequence parallelism of the transformer with cache-dit.

diffusers 0.42.1 ships no context-parallel plan for ZImageTransformer2DModel; cache-dit (1.5.x,
PyPI `cache-dit`, pure Python) registers one (`cache_dit/distributed/transformers/zimage.py`):
the image and caption tokens are split along the sequence before the first block of the noise
refiner, the context refiner and the main layers, and gathered after them; attention runs as
Ulysses (all-to-all over heads; 30 heads over 4 GPUs are padded to 32) or ring (key/value blocks
passed around). It hooks diffusers' own ZImageTransformer2DModel in place, so the pipeline
measured is still diffusers' ZImagePipeline. The text encoder and the VAE run whole on every GPU.
Caching stays off (no `cache_config`): every step computes in full.

Each GPU's process (probes.replicas) joins a torch.distributed group (NCCL on GPUs, gloo on CPU),
then every rank makes the same pipeline calls: `Lockstep.agree` gives every rank the slowest
rank's timings of each call, so that the measurement's decisions (steps a call, repeats) are the
same everywhere and the record holds the time the image took.

Verified on CPU (gloo, the tiny architecture, torch 2.13, diffusers 0.42.1, cache-dit 1.5.3):
Ulysses over 2 processes gives the single-process image exactly. Ring stops on CPU (its
attention needs torch's flash SDPA for the log-sum-exp, a CUDA kernel). Nothing here has run on
GPUs yet (data/measurements/README.md lists the runs left).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import time
from dataclasses import replace

import torch
import torch.distributed as dist

from advisor.contract import SPLIT_MODES, Config, Parallel
from advisor.errors import AdvisorError

LIBRARY = "cache-dit"
INSTALL = "pip install 'cache-dit>=1.5' einops"


def missing() -> str | None:
    """Why the split-image modes cannot run here, or None."""
    if importlib.util.find_spec("cache_dit") is None or importlib.util.find_spec("einops") is None:
        return (f"one image across GPUs (parallel mode {' or '.join(SPLIT_MODES)}) needs "
                f"{LIBRARY} and einops: {INSTALL}")
    return None


def check_configs(configs: list[Config]) -> None:
    """AdvisorError before any work for a split config this probe cannot run."""
    split = [c for c in configs if c.parallel.mode in SPLIT_MODES]
    if not split:
        return
    reason = missing()
    if reason:
        raise AdvisorError(reason)
    for c in split:
        if c.compile or c.offload != "none" or c.precision not in ("bf16", "fp16", "fp32"):
            raise AdvisorError(f"{c.label()}: one image across GPUs is probed in bf16, fp16 or "
                               "fp32 without compile or offload only (nothing else was tried "
                               "with cache-dit's plan)")


def library() -> dict:
    """The record's `results.parallel_library`."""
    return {"name": LIBRARY, "version": importlib.metadata.version(LIBRARY)}


def enable(pipe, layout: Parallel) -> None:
    """Split `pipe`'s transformer over the torch.distributed group (already joined)."""
    import cache_dit

    sizes = {"ulysses": {"ulysses_size": layout.gpus}, "ring": {"ring_size": layout.gpus}}
    cache_dit.enable_cache(pipe, parallelism_config=cache_dit.ParallelismConfig(
        **sizes[layout.mode]))


def join(rank: int, layout: Parallel, device: torch.device, port: int) -> None:
    """Join this process to the group of the layout's GPUs (rendezvous on this host)."""
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=layout.gpus)


class Lockstep:
    """The measure group of one image split across the GPUs (probes.measure): every rank takes
    the slowest rank's timings of each call, and the timed calls start together."""

    def __init__(self, device: torch.device):
        self.device = device
        self.window: tuple[float, float] | None = None

    def agree(self, call):
        times = torch.tensor([call.text_encode_s, call.first_step_s, call.vae_decode_s,
                              call.call_s, *call.steady_steps_s], dtype=torch.float64,
                             device=self.device)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        text, first, vae, whole, *steady = times.tolist()
        return replace(call, text_encode_s=text, first_step_s=first, vae_decode_s=vae,
                       call_s=whole, steady_steps_s=steady)

    def start(self) -> None:
        dist.barrier()
        self.window = (time.perf_counter(), time.perf_counter())

    def finish(self, call) -> None:
        self.window = (self.window[0], time.perf_counter())
