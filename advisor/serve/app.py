"""A served plan as a Ray Serve application: `Generator` deployments (one replica per GPU, the
pipeline and its batching, `advisor.serve.replica`) behind one `Ingress` deployment (the HTTP
front, `advisor.serve.ingress`). `build(args)` is the application builder a Ray Serve config
names (`import_path: advisor.serve.app:build`, written by `advisor recommend --export
ray-serve`); `serve_locally` is `advisor serve`. Ray is imported inside the functions.
"""
from __future__ import annotations

import os
import time

from advisor import REPO_ROOT
from advisor.errors import AdvisorError
from advisor.serve.ingress import Front
from advisor.serve.replica import Generator
from advisor.serve.spec import INGRESS_OPTIONS, ServeSpec

APP_NAME = "zimage"
IMPORT_PATH = "advisor.serve.app:build"


def application(spec: ServeSpec):
    from ray import serve
    from ray.serve.metrics import Counter, Histogram
    from starlette.responses import Response

    class RayGenerator(Generator):
        """The replica, with its batches counted in Ray Serve's metrics."""

        def __init__(self, spec_dict: dict):
            super().__init__(spec_dict)
            self.m_batch = Histogram("zimage_batch_size", "images per batch",
                                     boundaries=[float(k) for k in range(1, 65)])
            self.m_service = Histogram("zimage_batch_service_s", "pipeline seconds per batch",
                                       boundaries=[0.05 * 2**k for k in range(12)])
            self.m_images = Counter("zimage_images", "images served")

        async def _run_batch(self, key, jobs):
            done = await super()._run_batch(key, jobs)
            self.m_batch.observe(len(jobs))
            self.m_service.observe(done[0][3])
            self.m_images.inc(len(jobs))
            return done

    class Ingress:
        def __init__(self, spec_dict: dict, generator):
            self.generator = generator
            self.front = Front(ServeSpec.from_dict(spec_dict), self._call)

        async def _call(self, job: dict) -> dict:
            return await self.generator.generate.remote(job)

        async def __call__(self, request):
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            status, out_headers, data = await self.front.handle(
                request.method, request.url.path, headers, body)
            out_headers.pop("X-Request-Id")  # Ray's proxy sets it (the id the front used)
            return Response(data, status_code=status, headers=out_headers)

    generator = serve.deployment(RayGenerator, name="Generator").options(
        **spec.generator_options())
    ingress = serve.deployment(Ingress, name="Ingress").options(**INGRESS_OPTIONS)
    return ingress.bind(spec.as_dict(), generator.bind(spec.as_dict()))


def build(args: dict):
    """Ray Serve application builder: `args` are the `ServeSpec` fields."""
    return application(ServeSpec.from_dict(args, source="application args"))


def start(spec: ServeSpec, host: str = "127.0.0.1", port: int = 8000,
          address: str | None = None) -> tuple[ServeSpec, str]:
    """Connect to (or start) Ray, fit the replicas to the GPUs there, deploy and wait until every
    replica has loaded and warmed its pipeline. Returns the spec deployed and the URL."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env=runtime_env(address))
    if spec.gpus_per_replica > 0:
        gpus = int(ray.cluster_resources().get("GPU", 0) // spec.gpus_per_replica)
        if gpus < 1:
            raise AdvisorError("the Ray cluster has no GPU for a replica: serve on a GPU host, "
                               "or --device cpu (tests)")
        spec = spec.with_changes(replicas=min(spec.replicas, gpus))
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(spec), name=APP_NAME, route_prefix="/")
    return spec, f"http://{host}:{port}"


def runtime_env(address: str | None) -> dict:
    """Where the replicas find this project: on this machine its tree on the path; on a cluster
    the tree travels as Ray's working_dir (as `advisor probe --ray` sends it)."""
    if address is None:
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        return {"env_vars": {"PYTHONPATH": path}}
    from probes.fleet import EXCLUDES

    return {"working_dir": str(REPO_ROOT), "excludes": EXCLUDES}


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_forever(spec: ServeSpec, host: str, port: int, address: str | None, planned: int):
    spec, url = start(spec, host, port, address)
    print(f"serving {', '.join(spec.sizes)} on {spec.replicas} replica(s) of "
          f"{spec.gpus_per_replica:g} GPU, batches up to {spec.max_batch}, window "
          f"{spec.window_s:g} s")
    if spec.replicas < planned:
        print(f"note: the plan serves on {planned} GPUs; this cluster has GPUs for "
              f"{spec.replicas}, so its latency figures hold at 1/{planned} of the plan's "
              "demand per replica")
    print(f"POST {url}/generate   GET {url}/healthz   (Ctrl-C stops)")
    try:
        while True:
            time.sleep(1.0)
    finally:
        stop()
