"""`advisor serve` without Ray: the JSON API's checks, the online batcher against the planner's
policy, the HTTP front's statuses, the spec from a plan and the command's argument errors."""
from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from advisor.cli import main
from advisor.dispatch import replay
from advisor.errors import AdvisorError
from advisor.serve.api import ApiError, parse_job
from advisor.serve.batcher import PlannerBatcher
from advisor.serve.ingress import Front
from advisor.serve.spec import ServeSpec, from_plan
from tests.plans import saved_plan

SIZES = {(64, 64), (128, 64)}


def job(**fields) -> bytes:
    return json.dumps({"prompt": "a cat", "height": 64, "width": 64, **fields}).encode()


def test_a_valid_request_becomes_a_job_with_defaults():
    j = parse_job(job(), "r1", SIZES, 9, lambda: 7)
    assert (j.id, j.height, j.width, j.steps, j.seed, j.output) == ("r1", 64, 64, 9, 7, "png")
    j = parse_job(job(seed=3, steps=4, output="size", height=128), "r2", SIZES, 9, lambda: 7)
    assert (j.key, j.seed, j.output) == ((128, 64, 4), 3, "size")


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "expected a JSON object"),
    (job(colour="red"), 400, "unknown field(s) colour"),
    (job(prompt=""), 400, "field 'prompt'"),
    (job(height="64"), 400, "field 'height': expected an integer"),
    (job(height=True), 400, "field 'height'"),
    (job(height=640), 422, "size 64x640 (width x height) is not served: the plan covers 64x64, 64x128"),
    (job(steps=0), 400, "field 'steps'"),
    (job(seed=-1), 400, "field 'seed'"),
    (job(output="jpeg"), 400, "field 'output'"),
    (b" " * 70_000, 413, "at most"),
])
def test_bad_requests_get_a_status_naming_the_field(body, status, words):
    with pytest.raises(ApiError) as err:
        parse_job(body, "r", SIZES, 9, lambda: 0)
    assert err.value.status == status and words in err.value.message


def run_batcher(arrivals, classes, service_s, max_batch, window_s):
    """Requests submitted at `arrivals` (s) to a PlannerBatcher whose batches sleep
    `service_s[class][size - 1]`; per request, the batch it ran in (as its first request)."""
    ran = {}

    async def run_batch(key, items):
        await asyncio.sleep(service_s[key][len(items) - 1])
        return [items[0]] * len(items)

    async def main_():
        batcher = PlannerBatcher(run_batch, max_batch, window_s, limit=100)
        t0 = time.monotonic()

        async def one(i):
            await asyncio.sleep(max(0.0, arrivals[i] - (time.monotonic() - t0)))
            ran[i] = await batcher.submit(classes[i], i)

        await asyncio.gather(*(one(i) for i in range(len(arrivals))))

    asyncio.run(main_())
    return [ran[i] for i in range(len(arrivals))]


def test_the_online_batcher_forms_the_planners_batches():
    # Gaps of 60 ms or more around every window end and batch finish: timer noise cannot
    # move a request across a boundary.
    arrivals = [0.0, 0.05, 0.30, 0.45, 0.50, 0.55, 0.60, 1.30, 1.32]
    classes = [0, 0, 1, 0, 0, 0, 0, 1, 0]
    service = {0: [0.25, 0.30, 0.35], 1: [0.20, 0.25, 0.30]}
    got = run_batcher(arrivals, classes, service, max_batch=3, window_s=0.15)
    start, _, size = replay(arrivals, classes, 2, 3, 0.15,
                            lambda c, k, _: service[c][k - 1])
    expected = [int(np.flatnonzero(start == s)[0]) for s in start]  # first request of its batch
    assert got == expected
    assert max(size) == 3 and min(size) == 1


def test_a_full_queue_is_refused_and_a_failed_batch_fails_its_requests():
    async def scenario():
        async def run_batch(key, items):
            await asyncio.sleep(0.05)
            if key == "bad":
                raise RuntimeError("CUDA error: boom")
            return items

        batcher = PlannerBatcher(run_batch, max_batch=2, window_s=0.0, limit=3)
        tasks = [asyncio.ensure_future(batcher.submit("ok", i)) for i in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as err:
            await batcher.submit("ok", 99)
        assert err.value.status == 503 and "queue full" in err.value.message
        assert await asyncio.gather(*tasks) == [0, 1, 2]
        with pytest.raises(RuntimeError, match="CUDA error"):
            await batcher.submit("bad", 0)

    asyncio.run(scenario())


SPEC = ServeSpec(resolutions=((64, 64),), max_batch=2, steps=2, request_timeout_s=0.2)


def call(front: Front, method: str, path: str, body: bytes = b"", headers=None):
    status, out_headers, data = asyncio.run(front.handle(method, path, headers or {}, body))
    return status, out_headers, json.loads(data)


class Died(Exception):
    pass


Died.__name__ = "ActorDiedError"  # as Ray names a replica that died


@pytest.mark.parametrize("generate, status, words", [
    (lambda j: asyncio.sleep(1.0), 504, "no answer within 0.2 s"),
    (lambda j: _raise(Died("gone")), 503, "died"),
    (lambda j: _raise(ApiError(503, "queue full: x", 1)), 503, "queue full"),
    (lambda j: _raise(ValueError("bad")), 500, "ValueError: bad"),
])
def test_every_failure_of_a_replica_is_a_status_not_a_hang(generate, status, words):
    code, headers, body = call(Front(SPEC, generate), "POST", "/generate", job())
    assert code == status and words in body["error"] and body["id"] == headers["X-Request-Id"]
    assert ("Retry-After" in headers) == (status == 503)


async def _raise(exc):
    raise exc


def test_routes_health_and_request_ids():
    async def generate(j):
        return {"id": j["id"], "timings": {"queue_s": 0.0, "service_s": 0.0}}

    front = Front(SPEC, generate)
    status, headers, body = call(front, "POST", "/generate", job(), {"x-request-id": "abc-1"})
    assert status == 200 and body["id"] == headers["X-Request-Id"] == "abc-1"
    assert body["timings"]["server_s"] >= 0
    _, headers, _ = call(front, "POST", "/generate", job(), {"x-request-id": "bad id!"})
    assert headers["X-Request-Id"] != "bad id!" and len(headers["X-Request-Id"]) == 32
    assert call(front, "GET", "/healthz")[2]["status"] == "ok"
    assert call(front, "GET", "/plan")[2]["max_batch"] == 2
    assert call(front, "GET", "/nope")[0] == 404
    assert call(front, "GET", "/generate")[0] == 405


def test_a_spec_is_checked_and_read_back():
    with pytest.raises(AdvisorError, match="field 'resolutions'"):
        ServeSpec(resolutions=((60, 64),))
    with pytest.raises(AdvisorError, match="field 'max_batch'"):
        ServeSpec(resolutions=((64, 64),), max_batch=0)
    with pytest.raises(AdvisorError, match="unknown field"):
        ServeSpec.from_dict({"resolutions": [[64, 64]], "colour": 1})
    assert ServeSpec.from_dict(SPEC.as_dict()) == SPEC


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    return saved_plan(tmp_path_factory.mktemp("plan") / "plan.yaml")


def test_the_spec_of_a_plan_is_its_option(plan):
    from advisor.export import load_plan

    doc = load_plan(plan)
    option = doc["results"]["options"][0]
    spec = from_plan(plan)
    assert spec.max_batch == option["max_batch"] and spec.gpu == option["gpu"]
    assert spec.replicas == option["fleet"]["serving_gpus"]
    assert spec.resolutions == tuple((r.height, r.width) for r in doc["request"].resolutions)
    assert spec.window_s == doc["request"].window_s and spec.setting == option["setting"]


@pytest.mark.parametrize("args, words", [
    (["--port", "0"], "--port: expected 1..65535"),
    (["--replicas", "0"], "--replicas: expected an integer >= 1"),
    (["--option", "99"], "--option 99"),
    (["--request-timeout-s", "0"], "--request-timeout-s"),
])
def test_serve_argument_errors_exit_2(plan, args, words, capsys):
    assert main(["serve", "--plan", str(plan), *args]) == 2
    assert words in capsys.readouterr().err


def test_serve_needs_an_existing_plan(capsys):
    assert main(["serve", "--plan", "nope.yaml"]) == 2
    assert "--plan nope.yaml: no such file" in capsys.readouterr().err



@pytest.mark.parametrize("period", [0, -1.0, float("inf"), float("nan"), True, "10"])
def test_a_health_check_period_is_a_finite_positive_number(period):
    with pytest.raises(AdvisorError, match="health_check_period_s"):
        ServeSpec(resolutions=((64, 64),), health_check_period_s=period)
    assert ServeSpec(resolutions=((64, 64),), health_check_period_s=2.5).generator_options()[
        "health_check_period_s"] == 2.5
