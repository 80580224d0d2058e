"""The whole test session runs with a home folder and a model cache of its own, in a temporary
folder: no test writes into the user's ~/.streamlit or ~/.cache/zimage-advisor, and a cache
left by an earlier run (or another checkout) is never read. One cache for the session: the
shipped measurements are fitted once however many tests use them."""
from __future__ import annotations

import os

import pytest

from advisor.cache import CACHE_ENV

PRIVATE = ("HOME", CACHE_ENV)


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    saved = {name: os.environ.get(name) for name in PRIVATE}
    os.environ.update({"HOME": str(home), CACHE_ENV: str(home / "model-cache")})
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
