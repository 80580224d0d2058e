"""Synthetic measurement records, for tests.

`make_record(...)` builds one valid schema-1 record; tests of other modules can import it.
`synthetic_records(...)` sweeps a probe-like grid on catalog GPUs whose stage times and memory
follow a known law (`LAW`, in the fitted models' own terms: inverse efficiencies of the roofline
terms in advisor.features, per setting and GPU), with multiplicative noise; configs whose NVML
peak would exceed the GPU's memory come back as `oom` records.
"""
from __future__ import annotations

import copy

import numpy as np

from advisor import CATALOG_PATH
from advisor.catalog import load_catalog
from advisor.contract import QUANTIZATIONS, Config, unsupported_reason
from advisor.features import specs_of
from advisor.features import (
    LATENCY_STAGES, MEMORY_STAGES, latency_design, make_row, memory_design,
    nvml_design,
)

BASE_CONFIG = {
    "height": 1024, "width": 1024, "batch": 1, "steps": 9, "guidance_scale": 0.0,
    "precision": "bf16", "attention": "native", "compile": False, "offload": "none",
    "caption_tokens": 64, "max_sequence_length": 512,
}

GPU_INFO = {
    "h100-sxm-80gb": {"name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559,
                      "compute_capability": "9.0", "power_limit_w": 700.0},
    "h200-sxm-141gb": {"name": "NVIDIA H200", "memory_mb": 143771,
                       "compute_capability": "9.0", "power_limit_w": 700.0},
}


def make_results(text_encode_s=0.02, denoise_step_s=0.2, vae_decode_s=0.1, steps=9, batch=1,
                 peak_allocated_mb=25000.0, nvml_peak_used_mb=27000.0,
                 denoise_first_step_s=None, other_s=0.0, **extra) -> dict:
    """A consistent `results` object: totals composed from the stages as the probe does."""
    first = denoise_step_s if denoise_first_step_s is None else denoise_first_step_s
    denoise_s = first + (steps - 1) * denoise_step_s
    total_s = text_encode_s + denoise_s + vae_decode_s + other_s
    results = {
        "text_encode_s": text_encode_s, "denoise_first_step_s": first,
        "denoise_step_s": denoise_step_s, "denoise_s": denoise_s, "vae_decode_s": vae_decode_s,
        "other_s": other_s, "total_s": total_s, "img_per_s": batch / total_s,
        "spread": {}, "repeats": 3, "end_to_end_s": None, "composition_error_pct": None,
        "peak_allocated_mb": peak_allocated_mb, "peak_reserved_mb": peak_allocated_mb * 1.04,
        "stage_memory": {}, "nvml_baseline_mb": None, "nvml_peak_used_mb": nvml_peak_used_mb,
        "gpu_util_pct": 98.0, "power_w": 600.0, "power_w_max": 690.0, "sm_clock_mhz": 1980.0,
        "energy_j_per_image": 600.0 * total_s / batch, "achieved_tflops": None, "mfu": None,
        "load_s": 30.0, "host_rss_peak_mb": 20000.0, "compile_s": None,
    }
    results.update(extra)
    return results


def make_record(gpu: str = "h100-sxm-80gb", status: str = "ok", results: dict | None = None,
                **config) -> dict:
    """One valid record on catalog GPU `gpu`; keyword arguments override config fields."""
    cfg = {**BASE_CONFIG, **config}
    info = GPU_INFO.get(gpu, {"name": gpu, "memory_mb": 81920, "compute_capability": "9.0",
                              "power_limit_w": 700.0})
    if status == "ok" and results is None:
        results = make_results(steps=cfg["steps"], batch=cfg["batch"])
    return {
        "schema_version": 1,
        "status": status,
        "error": None if status == "ok" else "CUDA out of memory. Tried to allocate 2.00 GiB",
        "weights": "synthetic",
        "timestamp": "2025-01-01T00:00:00+00:00",
        "gpu": {**info, "catalog_id": gpu, "driver": "570.86", "cuda": "12.8"},
        "host": {"cpu": "synthetic", "cpu_count": 16, "ram_gb": 128.0},
        "software": {"python": "3.11.7", "torch": "2.9.0", "diffusers": "0.36.0",
                     "transformers": "4.57.0"},
        "config": cfg,
        "results": copy.deepcopy(results) if status == "ok" else None,
    }


def min_cap_record(gpu, allocated_gib, offset_gib, trials, **config):
    """A minimum-cap search record whose minimum is `allocated_gib` + `offset_gib`, with the
    trials `trials(cap)` gives ([(cap GiB, ok|oom)])."""
    record = make_record(gpu=gpu, **config)
    cap = round(allocated_gib + offset_gib, 3)
    record["results"].update(min_cap_gib=cap, cap_trials=[
        {"cap_gib": c, "status": s, "failed_stage": None} for c, s in trials(cap)])
    record["config"]["memory_cap_gib"] = cap
    return record


# ---------------------------------------------------------------------------------------------
# The known law.

LAW = {
    # Latency coefficients in LATENCY_FEATURES order (overhead s, then 1 / efficiency).
    "text_encode": [0.004, 1 / 0.40, 1 / 0.80, 1 / 0.90],
    "denoise_step": [0.003, 1 / 0.50, 1 / 0.30, 1 / 0.70, 1 / 0.90, 1.0],
    "first_step_extra": [0.002, 1 / 0.90],
    "vae_decode": [0.002, 1 / 0.35, 1 / 0.60, 1 / 0.90],
    "other": [0.010, 8.0, 1 / 0.90],
    # A denoise step takes at least this long (the host issuing its kernels): small shapes.
    "denoise_step_floor": 0.05,
    # Efficiency changes by setting: factors on the denoise matmul / attention / hbm terms.
    "matmul_by_precision": {"bf16": 1.0, "fp16": 1.0, "fp32-tf32": 0.85, "fp32": 0.7,
                            "fp8": 0.45, "fp8-wo": 0.8, "int8-wo": 0.7},
    "attention_by_backend": {"native": 1.0, "cudnn": 0.8, "flash": 0.75},
    "compile_hbm": 0.6,
    # GPU-specific compute speed (clocks) the specs do not show: what transfer cannot know.
    "gpu_compute": {"h100-sxm-80gb": 1.0, "h200-sxm-141gb": 0.97},
    # Memory: MiB coefficients in MEMORY_FEATURES order (workspace, activations).
    "text_encode_memory": [300.0, 25000.0],
    "denoise_memory": [500.0, 46000.0, 0.0],
    "vae_decode_memory": [400.0, 800.0, 500.0, 200.0, 0.0],
    "fp32_attention_scores": 30.0,  # math attention (scores materialised) at fp32
    # NVML used = placement weights + coefficients in NVML_FEATURES order (context and fixed
    # buffers, then MiB the caching allocator keeps reserved per MiB of each stage's
    # activations); torch reserved = NVML used - the CUDA context. Coefficients >= 1 and a fixed
    # part above the context keep NVML used above allocated + context (the model's floor).
    "nvml": [900.0, 1.1, 1.3, 1.2],
    "context": 700.0,
}


def law_latency(row: dict) -> dict:
    """Stage seconds for one row under LAW."""
    out = {}
    for stage in LATENCY_STAGES:
        coef = np.array(LAW[stage], dtype=float)
        if stage == "denoise_step":
            coef[1] /= LAW["matmul_by_precision"][row["precision"]]
            coef[2] *= LAW["attention_by_backend"][row["attention"]]
            if row["compile"]:
                coef[3] *= LAW["compile_hbm"]
        coef[1:3] *= LAW["gpu_compute"].get(row["gpu"], 1.0)
        out[stage] = float(latency_design([row], stage)[0] @ coef)
    out["denoise_step"] = max(out["denoise_step"], LAW["denoise_step_floor"])
    return out


def law_memory(row: dict) -> dict:
    """Per-stage torch peak MiB, the run's peak, the NVML peak and torch reserved under LAW."""
    stages, activations = {}, []
    for stage in MEMORY_STAGES:
        coef = np.array(LAW[f"{stage}_memory"], dtype=float)
        if row["precision"] == "fp32" and stage == "denoise":
            coef[2] = LAW["fp32_attention_scores"]
        X, resident, floor = memory_design([row], stage)
        stages[stage] = float(max(floor[0], resident[0] + X[0] @ coef))
        activations.append(stages[stage] - resident[0])
    allocated = max(stages.values())
    X, placement = nvml_design(np.array([activations]), [row])
    nvml = max(float(placement[0] + X[0] @ np.array(LAW["nvml"])), allocated + LAW["context"])
    return {"stages": stages, "allocated": allocated, "nvml": nvml,
            "reserved": nvml - LAW["context"]}


# ---------------------------------------------------------------------------------------------
# Sweeps.

SHAPES = [(512, 512), (768, 768), (1024, 1024), (1280, 1280), (1536, 1536), (2048, 2048),
          (1024, 768), (768, 1344), (1536, 1024)]
MAX_PIXELS = 16 * 1024 * 1024  # per config, like the probe's standard grid


def standard_grid() -> list[dict]:
    """A grid shaped like the probe's `standard` one: every shape and batch at the default
    setting, the other settings at one or two shapes."""
    grid = [dict(height=h, width=w, batch=b) for h, w in SHAPES for b in (1, 2, 4, 8, 16)
            if h * w * b <= MAX_PIXELS]
    for precision in ("fp16", "fp32", "fp32-tf32"):
        grid += [dict(height=s, width=s, batch=b, precision=precision)
                 for s in (512, 1024) for b in (1, 4)]
    for extra in ({"attention": "cudnn"}, {"attention": "flash"}, {"compile": True},
                  {"guidance_scale": 4.0}, {"caption_tokens": 256}, {"caption_tokens": 512}):
        grid += [dict(height=1024, width=1024, batch=b, **extra) for b in (1, 4)]
    grid += [dict(height=1024, width=1024, offload=o) for o in ("model", "sequential")]
    return grid


def gpu_specs(catalog_path=CATALOG_PATH) -> dict:
    return specs_of(load_catalog(catalog_path).gpus)


# Three squares at batches 1 and 4: a small grid for tests that need a fit, not its accuracy.
SQUARES_GRID = [dict(height=h, width=w, batch=b)
                for h, w in ((512, 512), (1024, 1024), (1536, 1536)) for b in (1, 4)]
# The quantized grid as the probe's data/grids/quantized.yaml: each quantized precision eager
# and compiled where it is offered (int8-wo is not, compiled) on SQUARES_GRID, and the bf16
# references at 1024x1024 batch 1.
QUANTIZED_GRID = [dict(g, precision=p, compile=c) for p in QUANTIZATIONS for c in (False, True)
                  if unsupported_reason(p, (9, 0), c) is None for g in SQUARES_GRID] + [
    dict(height=1024, width=1024, compile=c) for c in (False, True)]


def with_sources(records: list[dict], name: str = "syn.jsonl") -> list[dict]:
    """The records, each with `_source` "<name>:<n>" as the reader sets it."""
    for i, r in enumerate(records, start=1):
        r["_source"] = f"{name}:{i}"
    return records


def synthetic_records(gpus=("h100-sxm-80gb", "h200-sxm-141gb"), grid=None, noise=0.01,
                      seed=0, catalog_path=CATALOG_PATH) -> list[dict]:
    """Records of `grid` (default standard_grid()) on each GPU under LAW, with lognormal noise
    of relative size `noise` on every time and memory figure (memory at half of it)."""
    rng = np.random.default_rng(seed)
    specs = gpu_specs(catalog_path)
    records = []
    for gpu in gpus:
        capacity_mib = GPU_INFO[gpu]["memory_mb"]
        for overrides in grid or standard_grid():
            record = make_record(gpu=gpu, **overrides)
            c = record["config"]
            row = make_row(specs[gpu], Config.from_record(c))
            memory = law_memory(row)
            if memory["nvml"] > capacity_mib:
                records.append(make_record(gpu=gpu, status="oom", **overrides))
                continue
            jitter = lambda value, scale=1.0: value * float(np.exp(rng.normal(0, noise * scale)))
            law = law_latency(row)
            times = {k: jitter(v) for k, v in law.items()}
            first_step = jitter(law["denoise_step"] + law["first_step_extra"])
            stage_memory = {s: {"peak_allocated_mb": jitter(v, 0.5),
                                "peak_reserved_mb": jitter(v, 0.5) * 1.04}
                            for s, v in memory["stages"].items()}
            allocated = max(m["peak_allocated_mb"] for m in stage_memory.values())
            nvml = jitter(memory["nvml"], 0.5)
            record["results"] = make_results(
                text_encode_s=times["text_encode"], denoise_step_s=times["denoise_step"],
                vae_decode_s=times["vae_decode"], steps=c["steps"], batch=c["batch"],
                denoise_first_step_s=first_step, other_s=times["other"],
                peak_allocated_mb=allocated, nvml_peak_used_mb=nvml,
                peak_reserved_mb=nvml - LAW["context"], stage_memory=stage_memory)
            records.append(record)
    return records
