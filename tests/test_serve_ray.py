"""`advisor serve` on Ray Serve: two replicas of the tiny pipeline on a local Ray instance
(CPU, 127.0.0.1 only), one instance for the whole module. A bounded load test over HTTP with
batches larger than one, and a killed replica replaced while its requests fail visibly."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

ray = pytest.importorskip("ray", reason="the serve tests need the serve extra")
pytest.importorskip("ray.serve", reason="the serve tests need the serve extra")
pytest.importorskip("diffusers", reason="the tiny pipeline needs the probe packages")

from advisor.cli import main  # noqa: E402
from advisor.loadtest import results  # noqa: E402
from advisor.serve import app  # noqa: E402
from advisor.serve.spec import ServeSpec  # noqa: E402
from tests.ports import free_port  # noqa: E402

SPEC = ServeSpec(resolutions=((64, 64), (128, 64)), max_batch=4, window_s=0.2, steps=2,
                 caption_tokens=16, replicas=2, gpus_per_replica=0.0, device="cpu", tiny=True,
                 request_timeout_s=60.0, health_check_period_s=1.0)



@pytest.fixture(scope="module")
def url():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env=app.runtime_env(None))
    try:
        _, base = app.start(SPEC, port=free_port())
        yield base
    finally:
        app.stop()


def post(url: str, body: dict, timeout_s: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_bounded_load_test_sees_batches_and_the_endpoint_overhead(url, tmp_path):
    out = tmp_path / "run.json"
    body = '{"prompt": "$prompt", "height": "$height", "width": "$width", "output": "size"}'
    assert main(["loadtest", "--url", f"{url}/generate", "--body", body, "--rate", "25",
                 "--resolution", "64x64:0.7", "--resolution", "64x128:0.3", "--max-batch", "4",
                 "--duration-s", "2", "--warmup-s", "0", "--max-requests", "50",
                 "--limit-s", "8", "--no-predict", "--no-progress", "--out", str(out)]) == 0
    doc = results.load(out)
    m = doc["measured"]
    assert m["error_requests"] == 0 and m["served_requests"] == doc["requests"] > 20
    assert max(int(k) for k in m["batch_size_histogram"]) > 1  # batching under load
    by_res = doc["endpoint"]["by_resolution"]
    assert set(by_res) <= {"64x64", "64x128"} and by_res
    for block in by_res.values():
        assert 0 < block["overhead_median_s"] < 5 and block["service_median_s"] > 0


def test_an_answer_carries_its_image_and_timings(url):
    status, body = post(url, {"prompt": "a cat", "height": 128, "width": 64, "seed": 5})
    assert status == 200 and body["seed"] == 5 and body["batch_size"] >= 1
    import base64

    assert base64.b64decode(body["image_png_base64"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert body["timings"]["server_s"] >= body["timings"]["service_s"] > 0
    assert post(url, {"prompt": "a cat", "height": 640, "width": 64})[0] == 422


def replica_actors() -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if "#Generator#" in a["name"])


def test_a_killed_replica_is_replaced_and_its_requests_fail_visibly(url):
    before = replica_actors()
    assert len(before) == 2
    with ThreadPoolExecutor(8) as pool:  # 50 steps: batches long enough to be cut short
        pending = [pool.submit(post, url, {"prompt": "a cat", "height": 64, "width": 64,
                                           "steps": 50, "output": "size"}) for _ in range(8)]
        time.sleep(0.5)
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        answers = [f.result(timeout=60) for f in pending]  # every one answers
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {200, 503} and 503 in statuses
    assert all("died" in body["error"] for status, body in answers if status == 503)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = replica_actors()
        if len(now) == 2 and before[0] not in now:
            break
        time.sleep(1.0)
    assert len(now) == 2 and before[0] not in now
    served = set()
    while time.monotonic() < deadline and len(served) < 2:
        status, body = post(url, {"prompt": "a cat", "height": 64, "width": 64, "output": "size"})
        if status == 200:
            served.add(body["replica"])
    assert len(served) == 2  # the replacement serves too
