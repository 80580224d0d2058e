"""Synthetic measurement records, for tests.

`make_record(...)` builds one valid schema-1 record; tests of other modules can import it.
"""
from __future__ import annotations

import copy

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
                 peak_allocated_mb=25000.0, nvml_peak_used_mb=27000.0, **extra) -> dict:
    """A consistent `results` object: totals composed from the stages."""
    denoise_s = denoise_step_s * steps
    total_s = text_encode_s + denoise_s + vae_decode_s
    results = {
        "text_encode_s": text_encode_s, "denoise_step_s": denoise_step_s, "denoise_s": denoise_s,
        "vae_decode_s": vae_decode_s, "total_s": total_s, "img_per_s": batch / total_s,
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
