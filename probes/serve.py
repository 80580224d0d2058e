"""The real pipeline as a load-test service (`advisor loadtest` in process): loaded once as the
probe loads it (pretrained weights when a snapshot is at hand, else the exact architecture with
synthetic weights), put in the setting's attention backend, TF32 and VAE modes, and called with
a batch of one resolution per `run` (or `generate`, which takes the prompts and seeds of a
served batch and returns its images). `sample` reads torch allocated/reserved, NVML memory,
utilization and power, and host RSS.
"""
from __future__ import annotations

import psutil
import torch

from advisor.contract import Config
from probes.measure import prepare
from probes.meters import Nvml
from probes.pipeline import LoadKey, find_weights, free_memory, freeze_heap, load
from probes.runs import environment
from probes.tokenizer import caption_prompt

MB = 2**20


class PipelineService:
    def __init__(self, setting: dict, steps: int, caption_tokens: int, device: str = "cuda",
                 weights: str = "auto", allow_download: bool = False, tiny: bool = False):
        self.device = torch.device("cuda", torch.cuda.current_device()) if device == "cuda" \
            else torch.device("cpu")
        self.steps = steps
        self.config = Config(height=1024, width=1024, steps=steps, caption_tokens=caption_tokens,
                             **setting)
        path = None if tiny else find_weights(weights, allow_download)
        self.loaded = load(LoadKey.of(self.config), self.device, path, tiny)
        prepare(self.loaded, self.config)
        self.nvml = Nvml.open(self.device)
        env = environment(self.device, self.nvml)
        env.pop("_catalog_gpu", None)
        self.environment = env
        self.prompt = caption_prompt(self.loaded.pipe.tokenizer, caption_tokens)
        self.process = psutil.Process()
        freeze_heap()

    @property
    def provenance(self) -> dict:
        return {"weights": self.loaded.weights, "weights_source": self.loaded.source,
                "architecture": self.loaded.architecture, "load_s": self.loaded.load_s,
                **self.environment}

    def run(self, height: int, width: int, batch: int) -> None:
        self.generate(height, width, [self.prompt] * batch)

    def generate(self, height: int, width: int, prompts: list[str], seeds=None,
                 steps: int | None = None) -> list:
        """One batch of images (PIL), one per prompt, each from its own seed when given."""
        c = self.config
        generator = None if seeds is None else \
            [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        images = self.loaded.pipe(prompt=list(prompts), height=height, width=width,
                                  num_inference_steps=steps or self.steps,
                                  guidance_scale=c.guidance_scale,
                                  max_sequence_length=c.max_sequence_length, generator=generator,
                                  output_type="pil").images
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return images

    def warm(self, height: int, width: int, max_batch: int) -> None:
        """Full calls at batch 1 and at the max batch, twice (kernels, autotuning, compile,
        the allocator's pools), before the clock starts."""
        for _ in range(2):
            for batch in sorted({1, max_batch}):
                self.run(height, width, batch)
        free_memory()

    def sample(self) -> dict:
        out = {"host_rss_mb": self.process.memory_info().rss / MB}
        if self.device.type == "cuda":
            out["allocated_mb"] = torch.cuda.memory_allocated(self.device) / MB
            out["reserved_mb"] = torch.cuda.memory_reserved(self.device) / MB
        if self.nvml is not None:
            nv = self.nvml.read()
            out.update(nvml_used_mb=nv["used_mb"], gpu_util_pct=nv["util_pct"],
                       power_w=nv["power_w"], sm_clock_mhz=nv["sm_clock_mhz"])
        return out
