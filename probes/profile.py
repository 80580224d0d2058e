"""Where a pipeline call's GPU time goes: kernel time by op class per stage (torch.profiler).

One extra call, outside the timed ones (the profiler slows the host), with a device synchronize
at every stage boundary so that each kernel runs inside its stage's window. Per stage: kernel
seconds by op class, GPU-busy seconds (the union of kernel intervals), the window's wall
seconds and the kernels launched. The denoise figures are per step: the mean over the call's
steps after the first (the first carries warm-up and offload transfers).

`summarize` works on plain (name, device, start, end) tuples, so the arithmetic is tested on a
CPU; `profile_call` is the part that needs a GPU.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable

OP_CLASSES = ("gemm", "attention", "convolution", "elementwise", "communication", "other")
PROFILED_STAGES = ("text_encode", "denoise_step", "vae_decode")
ANNOTATION = "stage/"
# Kernel name -> class, first match wins. NCCL's collectives (a split image, probes.split) come
# first ("ncclDevKernel_AllGather...": "gather" is elementwise below), then attention (cuDNN's
# SDPA kernels are named "...sdpa...flash_fprop..."), convolution before GEMM (cuDNN
# convolutions run as "...xmma_fprop_implicit_gemm..."), Inductor's matmul templates before its
# fused pointwise kernels ("triton_tem_" vs "triton_poi_"/"triton_red_"/"triton_per_"). cuDNN's
# layout transforms around the VAE's convolutions ("nchwToNhwcKernel", 8 of 88 ms of a 1024x1024
# decode on an H200) are memory-bound copies: elementwise.
_CLASS_PATTERNS = (
    ("communication", r"nccl"),
    ("attention", r"flash|fmha|sdpa|attention|attn"),
    ("convolution", r"conv|implicit_gemm|implicit_convolve|winograd|fprop|dgrad|wgrad"),
    ("gemm", r"gemm|cutlass|xmma|nvjet|cublas|matmul|triton_tem_|_mm_|splitk"),
    ("elementwise", r"elementwise|vectorized|unrolled|reduce|norm|softmax|triton_|pointwise|"
                    r"silu|gelu|copy|cat|fill|index|scatter|gather|upsample|rope|rotary|pad|"
                    r"moments|nchwtonhwc|nhwctonchw|tensortransform|memset|fusedparams"),
)
_COMPILED = [(name, re.compile(pattern, re.I)) for name, pattern in _CLASS_PATTERNS]
METHOD = ("torch.profiler, one call outside the timed ones, device synchronize at each stage "
          "boundary; kernel seconds by op class (name patterns in probes/profile.py), busy = "
          "union of kernel intervals, wall = the stage's window; denoise figures per step, "
          "steps after the first")


def is_kernel(event, cuda) -> bool:
    """A device event that is work (a kernel, copy or set), not a range the profiler mirrors on
    the GPU timeline for a `record_function` (ours, or Inductor's): those span whole stages."""
    return (event.device_type == cuda and not getattr(event, "is_user_annotation", False)
            and not event.name.startswith(ANNOTATION))


def op_class(kernel: str) -> str:
    """The op class of a CUDA kernel name (OP_CLASSES)."""
    for name, pattern in _COMPILED:
        if pattern.search(kernel):
            return name
    return "other"


def summarize(windows: dict[str, list[tuple[float, float]]],
              kernels: Iterable[tuple[str, float, float]]) -> dict:
    """Per stage: {"wall_s", "busy_s", "kernels", "class_s": {class: s}} per window (the mean
    over a stage's windows), from stage windows and (name, start, end) kernels, all in µs."""
    by_stage: dict[str, list[list]] = {s: [[] for _ in w] for s, w in windows.items()}
    for name, start, end in kernels:
        for stage, spans in windows.items():
            i = next((i for i, (a, b) in enumerate(spans) if a <= start < b), None)
            if i is not None:
                by_stage[stage][i].append((name, start, min(end, spans[i][1])))
                break
    out = {}
    for stage, spans in windows.items():
        if not spans:
            continue
        n = len(spans)
        classes = dict.fromkeys(OP_CLASSES, 0.0)
        busy = launched = 0.0
        for (a, b), found in zip(spans, by_stage[stage]):
            for name, start, end in found:
                classes[op_class(name)] += (end - start) / 1e6 / n
            busy += _union([(s, e) for _, s, e in found]) / 1e6 / n
            launched += len(found) / n
        out[stage] = {"wall_s": sum(b - a for a, b in spans) / 1e6 / n, "busy_s": busy,
                      "kernels": round(launched, 1), "class_s": classes}
    return out


def _union(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@contextlib.contextmanager
def _annotated(pipe, sync: Callable[[], None]):
    """Mark the pipeline's stages as profiler ranges "stage/<name>", synchronizing at each
    boundary: encode_prompt, every transformer forward, vae.decode."""
    import torch

    open_ranges: list = []

    def enter(name: str):
        sync()
        r = torch.autograd.profiler.record_function(ANNOTATION + name)
        r.__enter__()
        open_ranges.append(r)

    def leave():
        sync()
        open_ranges.pop().__exit__(None, None, None)

    def wrap(fn, name):
        def marked(*args, **kwargs):
            enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                leave()
        return marked

    pre = pipe.transformer.register_forward_pre_hook(lambda *_: enter("denoise_step"))
    post = pipe.transformer.register_forward_hook(lambda *_: leave())
    pipe.encode_prompt = wrap(pipe.encode_prompt, "text_encode")
    pipe.vae.decode = wrap(pipe.vae.decode, "vae_decode")
    try:
        yield
    finally:
        pre.remove()
        post.remove()
        del pipe.encode_prompt, pipe.vae.decode  # the class methods again


def profile_call(pipe, call: Callable[[], None], device) -> dict:
    """Run `call` (one pipeline call of at least two steps) under the profiler; the
    `results.profile` block of a record."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sync = lambda: torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof, \
            _annotated(pipe, sync):
        call()
    windows, kernels = split_events(prof.events(), torch.autograd.DeviceType.CUDA)
    return {**summarize(windows, kernels), "method": METHOD}


def split_events(events, cuda) -> tuple[dict[str, list[tuple[float, float]]], list[tuple]]:
    """(stage windows, kernels) of a profile's events: a window is the host-side range of a
    stage (the copy the profiler mirrors on the GPU timeline is neither a window nor a kernel:
    counted as a second window it would halve every per-window figure); the denoise windows
    are the steps after the first."""
    windows: dict[str, list[tuple[float, float]]] = {s: [] for s in PROFILED_STAGES}
    kernels = []
    for e in events:
        if is_kernel(e, cuda):
            kernels.append((e.name, e.time_range.start, e.time_range.end))
        elif (e.device_type != cuda and e.name.startswith(ANNOTATION)
              and e.name[len(ANNOTATION):] in windows):
            windows[e.name[len(ANNOTATION):]].append((e.time_range.start, e.time_range.end))
    windows["denoise_step"] = sorted(windows["denoise_step"])[1:]
    return windows, kernels
