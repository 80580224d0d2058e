"""`advisor probe` refuses the flags whose check needs no torch before torch is imported (that
import costs seconds and hundreds of MB), and an unreachable `--ray` address in bounded time."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

import pytest

from advisor.errors import AdvisorError
from probes import fleet
from tests.local_http import serving
from tests.ports import free_port

# Each run: its flags and what the message names. --out under tmp is filled in by the test.
REFUSED = [
    (["--tiny", "--device", "cpu"], "--out is required"),
    (["--tiny", "--device", "cpu", "--out", "{tmp}"], "is a folder"),
    (["--tiny", "--device", "cpu", "--out", "{tmp}/file/x.jsonl"], "is a file, not a folder"),
    (["--tiny", "--device", "cpu", "--out", "{tmp}/x.jsonl", "--limit-s", "nan"], "--limit-s"),
    (["--tiny", "--device", "cpu", "--out", "{tmp}/x.jsonl", "--grid", "nope.yaml"], "--grid"),
    (["--weights", "{tmp}", "--out", "{tmp}/x.jsonl"], "--weights"),
    (["--out", "{tmp}/x.jsonl", "--memory-cap-gib", "inf"], "--memory-cap-gib"),
    (["--tiny", "--weights", "{tmp}", "--out", "{tmp}/x.jsonl"], "--tiny builds synthetic"),
    (["--tiny", "--device", "cpu", "--out", "{tmp}", "--ray", "ray://[::1:5"], "--ray"),
    (["--tiny", "--device", "cpu", "--out", "{tmp}", "--ray", "127.0.0.1:{port}"],
     "cannot connect"),
]



def test_flags_that_need_no_torch_are_refused_before_torch_loads(tmp_path):
    (tmp_path / "file").write_text("")
    runs = [[a.format(tmp=tmp_path, port=free_port()) for a in argv] for argv, _ in REFUSED]
    code = (
        "import json, sys\n"
        "from advisor.cli import main\n"
        f"runs = json.loads({json.dumps(json.dumps(runs))})\n"
        "codes = [main(['probe', *argv]) for argv in runs]\n"
        "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [2] * len(REFUSED)
    assert not result["torch"]
    messages = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(messages) == len(REFUSED)
    for message, (_, named) in zip(messages, REFUSED):
        assert named in message, message


def test_a_ray_address_that_does_not_answer_as_ray_is_refused_in_bounded_time():
    class Plain(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    with serving(Plain) as url, socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts, never answers
        cases = ((url.removeprefix("http://"), "does not answer as a Ray cluster"),
                 (f"ray://127.0.0.1:{silent.getsockname()[1]}", "within 0.5 s"))
        for address, why in cases:
            started = time.perf_counter()
            with pytest.raises(AdvisorError, match=why):
                fleet.check_address(address, timeout_s=0.5)
            assert time.perf_counter() - started < 3
    fleet.check_address("auto")  # joined by Ray itself
