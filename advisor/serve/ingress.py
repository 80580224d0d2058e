"""The HTTP front of a served plan, without a web framework: a request (method, path, headers,
body) to a response (status, headers, body). It checks the request, gives it an id, hands the
job to a replica through `generate` (a Ray Serve handle call in `advisor.serve.app`), bounds the
wait, and turns every way a request can fail into a status with a JSON message: 400/413/422 for
bad input, 503 when the queue is full or the replica serving it died (with Retry-After), 504
past the request timeout. Nothing waits without bound.
"""
from __future__ import annotations

import asyncio
import json
import random
import time

from advisor.serve.api import ApiError, error_body, parse_job, request_id
from advisor.serve.spec import ServeSpec

JSON = "application/json"
# Ray's exceptions, by name (this module does not import Ray): the replica is gone or the
# handle's queue is full.
REPLICA_GONE = ("ActorDiedError", "RayActorError", "ActorUnavailableError",
                "ActorUnschedulableError", "DeploymentUnavailableError")
BACKPRESSURE = ("BackPressureError",)


class Front:
    """Routes: POST /generate, GET /healthz, GET /plan."""

    def __init__(self, spec: ServeSpec, generate):
        self.spec, self.generate = spec, generate
        self.sizes = set(spec.resolutions)
        self.random = random.SystemRandom()
        self.counts: dict[int, int] = {}

    async def handle(self, method: str, path: str, headers: dict, body: bytes):
        """(status, headers, body) for one request; `headers` with lower-case names."""
        received = time.monotonic()
        rid = request_id(headers.get("x-request-id"))
        try:
            status, answer = await self._route(method, path.rstrip("/") or "/", rid, body,
                                               received)
            extra = {}
        except ApiError as exc:
            status, answer = exc.status, error_body(rid, exc)
            extra = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
        self.counts[status] = self.counts.get(status, 0) + 1
        return status, {"Content-Type": JSON, "X-Request-Id": rid, **extra}, answer

    async def _route(self, method: str, path: str, rid: str, body: bytes, received: float):
        routes = {"/generate": "POST", "/healthz": "GET", "/plan": "GET"}
        if path not in routes:
            raise ApiError(404, f"no route {path}; routes: {', '.join(routes)}")
        if method != routes[path]:
            raise ApiError(405, f"{path} takes {routes[path]}, not {method}")
        if path == "/healthz":
            return 200, json.dumps({"status": "ok", "replicas": self.spec.replicas,
                                    "responses": self.counts}).encode()
        if path == "/plan":
            return 200, json.dumps(self.spec.as_dict()).encode()
        job = parse_job(body, rid, self.sizes, self.spec.steps,
                        lambda: self.random.randrange(2**31))
        answer = await self._generate(job.as_dict())
        answer["timings"]["server_s"] = time.monotonic() - received
        return 200, json.dumps(answer).encode()

    async def _generate(self, job: dict) -> dict:
        try:
            return await asyncio.wait_for(self.generate(job), self.spec.request_timeout_s)
        except ApiError:
            raise
        except asyncio.TimeoutError:
            raise ApiError(504, f"no answer within {self.spec.request_timeout_s:g} s "
                                "(request_timeout_s)") from None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a hang
            raise _status_of(exc) from None


def _status_of(exc: Exception) -> ApiError:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ApiError):  # raised in the replica, wrapped by Ray
        return ApiError(cause.status, cause.message, cause.retry_after_s)
    names = {type(e).__name__ for e in (exc, cause) if e is not None} | \
        {c.__name__ for c in type(exc).__mro__}
    if names & set(BACKPRESSURE):
        return ApiError(503, "queue full: every replica's queue is at its limit; retry later",
                        retry_after_s=1)
    if names & set(REPLICA_GONE):
        return ApiError(503, f"the replica serving this request died ({type(exc).__name__}); "
                             "it is being replaced: retry", retry_after_s=5)
    return ApiError(500, f"the replica failed: {type(exc).__name__}: {str(exc)[:300]}")
