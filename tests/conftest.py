"""The whole test run has a home folder and a model cache of its own, in pytest's temporary
folder for this run: no test writes into the user's ~/.streamlit or ~/.cache/zimage-advisor,
and a cache left by an earlier run (or another checkout) is never read.

One cache for the run: the shipped measurements are fitted, and their validation report
computed, once however many tests use them. Under pytest-xdist (`-n 2`, scripts/test.sh) each
worker is a session of its own with its own home, and the workers share the cache in the
controller's temporary folder (`basetemp`, new for each run; each worker's is a folder in it).
Sharing is safe: a cache file is written to a temp file and renamed, so a reader sees a whole
file or none; two workers that fit at once each write the same models (the last rename wins);
and the validation report is computed by one process at a time (advisor.cache.validation_of
locks), so the other worker waits for it and reads it."""
from __future__ import annotations

import os

import pytest

from advisor.cache import CACHE_ENV

PRIVATE = ("HOME", CACHE_ENV)
# The files that take longest (a Ray Serve cluster, a browser, the dashboard under AppTest,
# predictions over every GPU and setting, CPU worker processes), slowest first. They run first,
# so that xdist's workers finish together (scripts/test.sh keeps this order:
# --no-loadscope-reorder); the other files follow in their usual order. The first two wait on
# other processes about half their time, so they start together, one per worker, and each
# one's waits leave the CPUs to the other. This orders the tests only: every test runs either
# way.
SLOW_FIRST = ("test_serve_ray.py", "test_app_browser.py", "test_app.py", "test_intervals.py",
              "test_multi_gpu.py", "test_fit.py", "test_loadtest.py", "test_properties.py",
              "test_probe.py", "test_fleet.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept


def run_folder(config, tmp_path_factory):
    """This run's temporary folder: the controller's under xdist, else the session's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


@pytest.fixture(scope="session", autouse=True)
def private_home(request, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    cache = run_folder(request.config, tmp_path_factory) / "model-cache"
    saved = {name: os.environ.get(name) for name in PRIVATE}
    os.environ.update({"HOME": str(home), CACHE_ENV: str(cache)})
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
