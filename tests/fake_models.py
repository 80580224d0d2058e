"""A test double of the fitted models (`advisor.models.Models`) with a simple known law, for
planner and claim tests.

It follows the models' contract (`predict(gpu_id, config, memory_margin_gb)` and
`predict_many(queries, memory_margin_gb)` returning `advisor.contract.Prediction`s), so the
planner's sizing can be checked exactly:

    batch latency  = OVERHEAD_S + batch * megapixels * steps / 9 * SECONDS_PER_MP_AT_1000 * 1000
                     / dense TFLOPS(compute precision), times the setting factors below, plus
                     offload time (fp8 computes at the catalog's fp8 peak; the weight-only
                     quantizations at the bf16 one, slowed by dequantizing)
    memory         = WEIGHTS_GB[precision] (less with offload) + ACTIVATION_GB_PER_MP * batch * MP
    fits           = memory + memory_margin_gb <= the catalog's capacity_gb

Like the fitted models, it refuses (AdvisorError) a quantized precision on a GPU that cannot run
it (advisor.contract.unsupported_reason) and with offload (never measured), and, as models
fitted without them would, the precisions it is told it lacks.
"""
from __future__ import annotations

from advisor.catalog import load_catalog
from advisor.contract import QUANTIZATIONS, Config, Latency, Memory, Power, Prediction, \
    compute_precision
from advisor.errors import AdvisorError
from advisor.features import specs_of
from advisor.search import not_offered

OVERHEAD_S = 0.2
SECONDS_PER_MP_AT_1000 = 1.5  # one 1-megapixel image at 9 steps on a 1000-TFLOPS GPU
ATTENTION_FACTOR = {"native": 1.0, "cudnn": 0.97, "flash": 0.95}
COMPILE_FACTOR = 0.9
OFFLOAD_S = {"none": 0.0, "model": 2.0, "sequential": 12.0}  # per batch
# 8-bit weights: half the transformer's and text encoder's bytes (advisor.workload: 10.75 GB)
WEIGHTS_GB = {"bf16": 20.6, "fp16": 20.6, "fp32-tf32": 41.2, "fp32": 41.2, "fp8": 10.8,
              "fp8-wo": 10.8, "int8-wo": 10.8}
DEQUANTIZE_FACTOR = {"fp8-wo": 1.1, "int8-wo": 1.15}  # weight-only: bf16 matmuls after dequant
OFFLOAD_RESIDENT = {"none": 1.0, "model": 0.6, "sequential": 0.1}
ACTIVATION_GB_PER_MP = 2.0
INTERVAL = 0.1
MARGIN_GB = 1.0  # the default margin, as advisor.memory_rule.DEFAULT_MARGIN_GB


class FakeModels:
    model_version = "fake-law-1"
    calibration = {"latency_mape": 5.0, "memory_mape": 3.0}
    problems: list = []  # measurement lines skipped (none: the law needs no records)

    def __init__(self, catalog=None, speed: dict | None = None, transferred=(),
                 records: list | None = None, lacking=()):
        self.catalog = catalog or load_catalog()
        self.specs = specs_of(self.catalog.gpus)
        self.probed: dict = {}  # the fake law probed nothing: every GPU is transferred
        self.speed = speed or {}  # per-GPU multiplier on latency, to shape tests
        self.transferred = set(transferred)  # GPU ids whose figures read as transferred
        self.records = records or []  # the probed range (advisor.coverage); none by default
        self.lacking = set(lacking)  # precisions it has no figures for, as models fitted without
        self.calls = 0

    def predict(self, gpu_id: str, config: Config,
                memory_margin_gb: float = MARGIN_GB) -> Prediction:
        self.calls += 1
        c, gpu = config, self.catalog.get(gpu_id)
        refused = not_offered(gpu, c.precision, c.compile, c.attention) or (
            c.precision in QUANTIZATIONS and c.offload != "none"
            and f"{c.precision} with offload was never measured") or (
            c.precision in self.lacking and f"no measurements at {c.precision}")
        if refused:
            raise AdvisorError(f"{gpu_id} {c.label()}: {refused}")
        compute = _compute_s(gpu, c) * self.speed.get(gpu_id, 1.0)
        megapixels = c.height * c.width / 2**20
        total = OVERHEAD_S + compute + OFFLOAD_S[c.offload]
        memory = (WEIGHTS_GB[c.precision] * OFFLOAD_RESIDENT[c.offload]
                  + ACTIVATION_GB_PER_MP * c.batch * megapixels)
        needed, capacity = memory + memory_margin_gb, gpu.capacity_gb
        fits = needed <= capacity
        band = (memory * (1 - INTERVAL), memory * (1 + INTERVAL))
        return Prediction(
            gpu=gpu_id, config=config,
            latency=Latency(text_encode_s=0.05, denoise_s=compute, vae_decode_s=0.1,
                            other_s=total - compute - 0.15, total_s=total,
                            denoise_step_s=compute / c.steps,
                            interval_s=(total * (1 - INTERVAL), total * (1 + INTERVAL)),
                            basis="fake law"),
            memory=Memory(allocated_gb=memory, allocated_interval_gb=band, nvml_gb=memory,
                          nvml_interval_gb=band, nvml_capped=False, min_cap_gb=memory,
                          min_cap_source="fake law: the peak", needed_gb=needed,
                          capacity_gb=capacity, capacity_source=f"catalog capacity_gb of {gpu_id}",
                          rule=f"allocated + {memory_margin_gb:g} GB", basis="fake law"),
            fits=fits,
            fits_reason=(f"needs {needed:.1f} GB (torch allocated {memory:.1f} GB + "
                         f"{memory_margin_gb:.1f} GB margin), {'within' if fits else 'over'} "
                         f"{capacity:.1f} GB"),
            source="transferred" if gpu_id in self.transferred else "fitted",
            source_detail=f"fake law on {gpu_id}",
            achieved_tflops=0.35 * gpu.dense_tflops(compute_precision(c.precision)), mfu=0.35,
            power=Power(watts=None, source=None, energy_j_per_image=None),
            model_version=self.model_version,
        )

    def architecture_width(self, spec):
        """The unprobed-architecture term the law's intervals stand for: the prior's."""
        from advisor.intervals import ArchitectureWidth, family_of

        return ArchitectureWidth.of(family_of(spec), [])

    def predict_many(self, queries: list[tuple[str, Config]],
                     memory_margin_gb: float = MARGIN_GB) -> list[Prediction]:
        return [self.predict(gpu_id, config, memory_margin_gb) for gpu_id, config in queries]


def _compute_s(gpu, c: Config) -> float:
    """The law's compute seconds of a batch (no overhead, offload or per-GPU speed)."""
    work = c.batch * c.height * c.width / 2**20 * c.steps / 9 * (2 if c.cfg else 1)
    return (work * SECONDS_PER_MP_AT_1000 * 1000 / gpu.dense_tflops(compute_precision(c.precision))
            * ATTENTION_FACTOR[c.attention] * DEQUANTIZE_FACTOR.get(c.precision, 1.0)
            * (COMPILE_FACTOR if c.compile else 1.0))


def batch_latency_s(gpu, height, width, batch, precision="bf16", compile=False,
                    attention="native", steps=9) -> float:
    """The law's latency, for tests that assert exact figures."""
    return OVERHEAD_S + _compute_s(gpu, Config(height=height, width=width, batch=batch,
                                               steps=steps, precision=precision,
                                               attention=attention, compile=compile))
