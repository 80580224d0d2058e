"""Quantize a loaded pipeline with torchao, as a quantized precision (advisor.contract.QUANTIZATIONS)
names, in place, on the device where it lives: the Linear layers inside the transformer's blocks
(main layers and both refiners) and inside the text encoder's decoder layers, the weights
advisor.workload counts as low-precision (99.8% of the transformer's parameters, 90% of the text
encoder's). Embedders, the final layer, norms and the VAE stay bf16. A Linear layer whose widths
are not multiples of 16 (which the fp8 and int8 kernels need) would stay bf16 too; Z-Image-Turbo
has none. The record's `quantization` block lists what was quantized and skipped, the torchao
version and the seconds it took.
"""
from __future__ import annotations

import importlib.util
import time

import torch

from advisor.contract import QUANTIZATIONS, unsupported_reason
from advisor.errors import AdvisorError

# Component -> the module-name prefixes of its blocks.
BLOCKS = {"transformer": ("layers.", "noise_refiner.", "context_refiner."),
          "text_encoder": ("layers.",)}
ALIGNMENT = 16


def check_configs(configs, device: torch.device) -> None:
    """Refuse, before any work, the quantized configs this machine cannot run: torchao missing,
    fp8 on a GPU older than compute capability 8.9 (or on the CPU), or a quantized precision with
    CPU offload (not measured here: the offload hooks move bf16 modules)."""
    wanted = sorted({c.precision for c in configs if c.precision in QUANTIZATIONS})
    if not wanted:
        return
    offloaded = sorted({c.precision for c in configs
                        if c.precision in QUANTIZATIONS and c.offload != "none"})
    if offloaded:
        raise AdvisorError(f"precision {', '.join(offloaded)} with offload: the probe runs "
                           "quantized precisions without offload only; set offload: none")
    if importlib.util.find_spec("torchao") is None:
        raise AdvisorError(f"precision {', '.join(wanted)} needs torchao: "
                           "pip install -e '.[probe]' (or pip install torchao)")
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    for precision in wanted:
        need = QUANTIZATIONS[precision].min_capability
        if need is None:
            continue
        reason = unsupported_reason(precision, capability) if device.type == "cuda" else \
            f"{precision} needs a CUDA GPU of compute capability {need[0]}.{need[1]} or newer"
        if reason:
            raise AdvisorError(f"cannot probe {reason}; leave it out of the grid")


def torchao_config(precision: str):
    """The torchao config of `precision`. `set_inductor_config=False`: torchao would otherwise
    turn on inductor's coordinate-descent tuning for the whole process, which makes compiling
    take minutes and would make a compiled quantized run incomparable with a compiled bf16 one;
    every compiled run here uses inductor's defaults."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerRow,
    )
    return {
        "fp8": lambda: Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(),
                                                                 set_inductor_config=False),
        "fp8-wo": lambda: Float8WeightOnlyConfig(set_inductor_config=False),
        "int8-wo": lambda: Int8WeightOnlyConfig(set_inductor_config=False),
    }[precision]()


def aligned(module: torch.nn.Linear) -> bool:
    return module.in_features % ALIGNMENT == 0 and module.out_features % ALIGNMENT == 0


def quantize(pipe, precision: str, device: torch.device,
             parts: tuple[str, ...] = tuple(BLOCKS)) -> dict:
    """Quantize the blocks of `parts` (components, BLOCKS keys) of `pipe` in place as
    `precision` says; the record's `quantization` block."""
    import torchao
    from torchao.quantization import quantize_

    start = time.perf_counter()
    layers, skipped = {}, {}
    blocks = {name: BLOCKS[name] for name in parts}
    for name, prefixes in blocks.items():
        model = getattr(pipe, name)
        linears = {fqn: m for fqn, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and fqn.startswith(prefixes)}
        chosen = {fqn for fqn, m in linears.items() if aligned(m)}
        layers[name], skipped[name] = len(chosen), sorted(set(linears) - chosen)
        quantize_(model, torchao_config(precision), filter_fn=lambda _m, fqn: fqn in chosen)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        "precision": precision, "scheme": QUANTIZATIONS[precision].scheme,
        "torchao": torchao.__version__, "inductor_config": "defaults",
        "blocks": {k: list(v) for k, v in blocks.items()},
        "layers_quantized": layers, "layers_skipped": skipped,
        "quantize_s": round(time.perf_counter() - start, 3),
    }
