"""Time a first `advisor app`: until the server is healthy, and until the Plan page shows its
recommended fleet in a real browser (headless Chromium through Playwright).

    python benchmarks/bench_app.py [--repeats N] [--chromium PATH]

Each run is cold: a new home folder and an empty model cache, so the app fits the shipped
measurements and plans the example request from nothing, as on a fresh install. The README's
first command should give a working dashboard in 15 s or less on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advisor.cache import CACHE_ENV  # noqa: E402
# the browser, and the Plan page's answer, as the browser end-to-end test knows them
from tests.ports import free_port  # noqa: E402
from tests.test_app_browser import CHROMIUM, CHROMIUM_ARGS, FLEET_RE  # noqa: E402

TIMEOUT_S = 180


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chromium", default=str(CHROMIUM))
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("needs playwright (the dev extra)", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"no browser at {args.chromium} (--chromium)", file=sys.stderr)
        return 2
    healthy, answered = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True,
                                     args=CHROMIUM_ARGS)
        for i in range(args.repeats):
            h, a = _cold_start(browser)
            healthy.append(h)
            answered.append(a)
            print(f"run {i + 1}: healthy after {h:.1f} s, Plan page answer after {a:.1f} s")
        browser.close()
    print(f"median of {args.repeats}: healthy {statistics.median(healthy):.1f} s, "
          f"Plan page answer {statistics.median(answered):.1f} s ({os.cpu_count()} CPUs)")
    return 0


def _cold_start(browser) -> tuple[float, float]:
    """(seconds to healthy, seconds to the Plan page's fleet) from launching `advisor app`."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, CACHE_ENV: str(Path(home) / "cache")}
        port = free_port("localhost")
        url = f"http://localhost:{port}"
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "advisor", "app", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            healthy = _wait_healthy(url, proc) - start
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_text(FLEET_RE).first.wait_for(timeout=TIMEOUT_S * 1000)
            answered = time.monotonic() - start
            page.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    return healthy, answered


def _wait_healthy(url: str, proc: subprocess.Popen) -> float:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"`advisor app` exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"`advisor app` not healthy after {TIMEOUT_S} s")


if __name__ == "__main__":
    sys.exit(main())
