"""One replica of a served plan: the pipeline on one GPU (as the probe loads it), its batches
formed by the planner's policy (`advisor.serve.batcher`), run one at a time on a GPU thread;
each image PNG-encoded on other threads once its batch is done, so the GPU starts the next batch
meanwhile. The class is the Ray Serve deployment's body (`advisor.serve.app`) and runs
without Ray as well; torch and the pipeline are imported when it is built.
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor

from advisor.serve.api import Job
from advisor.serve.batcher import PlannerBatcher
from advisor.serve.spec import ServeSpec

ENCODE_THREADS = 4
UNHEALTHY_AFTER = 3  # failed batches in a row: the replica reports itself unhealthy


class Generator:
    def __init__(self, spec: ServeSpec | dict, warm: bool = True):
        from probes.serve import PipelineService

        self.spec = spec if isinstance(spec, ServeSpec) else ServeSpec.from_dict(spec)
        s = self.spec
        self.service = PipelineService(s.setting, s.steps, s.caption_tokens, s.device, s.weights,
                                       tiny=s.tiny)
        self.gpu = ThreadPoolExecutor(1, thread_name_prefix="gpu")
        self.encoder = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="png")
        self.name = _replica_name()
        self.batches = 0
        self.failed_in_a_row = 0
        self.batcher = PlannerBatcher(self._run_batch, s.max_batch, s.window_s, s.queue_limit)
        if warm:  # first-call effects (kernels, autotuning, compile) before the first request
            for h, w in s.resolutions:
                self.service.warm(h, w, s.max_batch)

    async def generate(self, job: dict) -> dict:
        """Serve one request (a `Job` as a dict); the answer without the server's own timing.
        Its PNG is encoded after its batch has left the GPU thread, while the next one runs."""
        job = Job(**job)
        arrived = time.monotonic()
        image, batch, start, service_s = await self.batcher.submit(job.key, job)
        png, encode_s = await asyncio.get_running_loop().run_in_executor(self.encoder, _png,
                                                                          image)
        out = {"id": job.id, "height": job.height, "width": job.width, "steps": job.steps,
               "seed": job.seed, **batch, "png_bytes": len(png),
               "timings": {"queue_s": start - arrived, "service_s": service_s,
                           "encode_s": encode_s, "replica_s": time.monotonic() - arrived}}
        if job.output == "png":
            out["image_png_base64"] = base64.b64encode(png).decode()
        return out

    async def _run_batch(self, key: tuple, jobs: list[Job]) -> list[tuple]:
        """One batch on the GPU thread: per job, its image, its batch, the batch's start and
        pipeline seconds."""
        height, width, steps = key
        number, self.batches = self.batches, self.batches + 1
        start = time.monotonic()
        try:
            images = await asyncio.get_running_loop().run_in_executor(
                self.gpu, self.service.generate, height, width, [j.prompt for j in jobs],
                [j.seed for j in jobs], steps)
        except Exception:
            self.failed_in_a_row += 1
            raise
        self.failed_in_a_row = 0
        service_s = time.monotonic() - start
        batch = {"replica": self.name, "batch": number, "batch_size": len(jobs)}
        return [(image, batch, start, service_s) for image in images]

    def check_health(self) -> None:
        """Ray Serve calls this periodically; an exception marks the replica unhealthy and Ray
        replaces it."""
        if self.failed_in_a_row >= UNHEALTHY_AFTER:
            raise RuntimeError(f"{self.failed_in_a_row} batches in a row failed")


def _png(image) -> tuple[bytes, float]:
    start = time.monotonic()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), time.monotonic() - start


def _replica_name() -> str:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not inside a Ray Serve replica
        return f"pid{os.getpid()}"
