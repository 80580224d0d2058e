"""End-to-end: the dashboard in a real headless Chromium (Debian's), driven by Playwright.

Starts `python -m advisor app` on a free localhost port, changes the demand, checks that the
recommended fleet changes, downloads the plan YAML and validates it, and saves screenshots to
test-artifacts/ (plan.png: the shipped example request; dashboard.png: after the change).
Skips only when the browser cannot be launched.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from advisor import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SERVER_START_S = 90
UI_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`advisor app` exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"dashboard not healthy after {SERVER_START_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    url = f"http://localhost:{port}"
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "advisor", "app", "--port", str(port)],
            cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except sync_api.Error as exc:
            pytest.skip(f"chromium at {CHROMIUM} cannot be launched: {exc}")
        yield b
        b.close()


FLEET_RE = re.compile(r"(?:Rent|Buy) (\d+) ×")


def _best_fleet(page) -> int:
    text = page.get_by_text(FLEET_RE).first.inner_text(timeout=UI_TIMEOUT_MS)
    return int(FLEET_RE.search(text).group(1))


def _wait_idle(page) -> None:
    """Until the app has finished its rerun: no 'running' widget and no stale element."""
    busy = '[data-testid="stStatusWidget"], [data-stale="true"]'
    deadline, quiet_since = time.monotonic() + UI_TIMEOUT_MS / 1000, None
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        if page.locator(busy).count():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
    pytest.fail("the app did not finish its rerun")


def _fleet_after_change(page, before: int) -> int:
    """The recommended fleet once the rerun has replaced the one of `before` GPUs (a slow
    machine may start the rerun late), or the unchanged fleet after the timeout."""
    deadline = time.monotonic() + UI_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        _wait_idle(page)
        if (fleet := _best_fleet(page)) != before:
            return fleet
    return before


def _screenshot(page, path: Path) -> None:
    """The page down to the end of its content (the main area scrolls inside the viewport)."""
    box = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
    height = min(page.viewport_size["height"], int(box["y"] + box["height"]) + 24)
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": page.viewport_size["width"],
                                          "height": height})


def test_plan_in_browser(server, browser, tmp_path):
    from advisor.export import load_plan

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 2400})
    page.set_default_timeout(UI_TIMEOUT_MS)
    start = time.monotonic()
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text(FLEET_RE).first.wait_for()
    page.get_by_text("Ranked options").wait_for()
    answer_s = time.monotonic() - start
    page.locator(".st-key-plan_options canvas").first.wait_for()
    page.locator(".st-key-plan_cost_chart .js-plotly-plot").wait_for()
    full_s = time.monotonic() - start
    timing = (f"first session after server start: answer and table heading {answer_s:.2f} s, "
              f"table and chart drawn {full_s:.2f} s")
    (ARTIFACTS / "first_render.txt").write_text(timing + "\n")
    print(timing)
    _wait_idle(page)
    _screenshot(page, ARTIFACTS / "plan.png")  # the shipped example request

    before = _best_fleet(page)
    demand = page.get_by_label("Average demand")
    new_demand = float(demand.input_value()) * 4
    demand.fill(f"{new_demand:g}")
    demand.press("Enter")
    after = _fleet_after_change(page, before)
    assert after > before, f"the recommended fleet stayed at {before} GPUs"

    with page.expect_download(timeout=UI_TIMEOUT_MS) as download:
        page.get_by_role("button", name="Download this plan (YAML)").click()
    path = tmp_path / "plan.yaml"
    download.value.save_as(path)
    doc = load_plan(path)
    assert doc["request"].to_dict()["demand"]["images_per_day"] == pytest.approx(new_demand)
    assert doc["results"]["options"][0]["fleet"]["total_gpus"] == after

    _screenshot(page, ARTIFACTS / "dashboard.png")
    page.close()
