"""A test double of `advisor.fit.Models` with a simple known law, for planner and claim tests.

It follows the documented `Models.predict` / `predict_many` contract (docs/internals.md), so the
planner's sizing can be checked exactly:

    batch latency  = OVERHEAD_S + batch * megapixels * steps / 9 * SECONDS_PER_MP_AT_1000 * 1000
                     / dense TFLOPS(precision), times the setting factors below, plus offload time
    peak memory    = WEIGHTS_GB[precision] (less with offload) + ACTIVATION_GB_PER_MP * batch * MP
"""
from __future__ import annotations

from advisor.catalog import load_catalog

OVERHEAD_S = 0.2
SECONDS_PER_MP_AT_1000 = 1.5  # one 1-megapixel image at 9 steps on a 1000-TFLOPS GPU
ATTENTION_FACTOR = {"native": 1.0, "cudnn": 0.97, "flash": 0.95}
COMPILE_FACTOR = 0.9
OFFLOAD_S = {"none": 0.0, "model": 2.0, "sequential": 12.0}  # per batch
WEIGHTS_GB = {"bf16": 20.6, "fp16": 20.6, "fp32-tf32": 41.2, "fp32": 41.2}
OFFLOAD_RESIDENT = {"none": 1.0, "model": 0.6, "sequential": 0.1}
ACTIVATION_GB_PER_MP = 2.0
INTERVAL = 0.1
MARGIN_GB = 1.0


class FakeModels:
    model_version = "fake-law-1"
    calibration = {"latency_mape": 5.0, "memory_mape": 3.0}

    def __init__(self, catalog=None, speed: dict | None = None):
        self.catalog = catalog or load_catalog()
        self.speed = speed or {}  # per-GPU multiplier on latency, to shape tests
        self.calls = 0

    def predict(self, gpu_id, height, width, batch=1, steps=9, precision="bf16",
                attention="native", compile=False, offload="none", cfg=False, caption_tokens=64):
        self.calls += 1
        gpu = self.catalog.get(gpu_id)
        tflops = gpu.dense_tflops(precision)
        megapixels = height * width / 2**20
        work = batch * megapixels * steps / 9 * (2 if cfg else 1)
        compute = work * SECONDS_PER_MP_AT_1000 * 1000 / tflops * ATTENTION_FACTOR[attention]
        compute *= (COMPILE_FACTOR if compile else 1.0) * self.speed.get(gpu_id, 1.0)
        total = OVERHEAD_S + compute + OFFLOAD_S[offload]
        memory = (WEIGHTS_GB[precision] * OFFLOAD_RESIDENT[offload]
                  + ACTIVATION_GB_PER_MP * batch * megapixels)
        return {
            "gpu": gpu_id,
            "latency_s": {"text_encode": 0.05, "denoise": compute, "vae_decode": 0.1,
                          "total": total},
            "latency_interval_s": [total * (1 - INTERVAL), total * (1 + INTERVAL)],
            "images_per_s": batch / total,
            "peak_memory_gb": memory,
            "memory_interval_gb": [memory * (1 - INTERVAL), memory * (1 + INTERVAL)],
            "memory_capacity_gb": float(gpu.memory_gb),
            "memory_margin_gb": MARGIN_GB,
            "fits": memory + MARGIN_GB <= gpu.memory_gb,
            "source": "fitted",
            "source_detail": f"fake law on {gpu_id}",
            "mfu": 0.35,
            "model_version": self.model_version,
        }

    def predict_many(self, configs: list[dict]) -> list[dict]:
        return [self.predict(**c) for c in configs]


def batch_latency_s(gpu, height, width, batch, precision="bf16", compile=False,
                    attention="native", steps=9) -> float:
    """The law's latency, for tests that assert exact figures."""
    megapixels = height * width / 2**20
    compute = (batch * megapixels * steps / 9 * SECONDS_PER_MP_AT_1000 * 1000
               / gpu.dense_tflops(precision) * ATTENTION_FACTOR[attention])
    return OVERHEAD_S + compute * (COMPILE_FACTOR if compile else 1.0)
