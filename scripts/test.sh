#!/usr/bin/env bash
# Install what the test suite needs and run all of it. The README's test command; CI runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

# torch first, pinned to the CPU build: a loose requirement would pull GBs of CUDA wheels.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[dev]"

# Debian's Chromium for the browser end-to-end test (Playwright cannot download its own here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
      || echo "note: chromium could not be installed; the browser test will skip"
  else
    echo "note: not root, chromium not installed; the browser test will skip"
  fi
fi

# A worker process per logical CPU, up to four (pytest-xdist; `auto` would count physical cores,
# one on a two-vCPU machine whose vCPUs are hyperthreads), a test file per worker at a time: the
# tests of a file share its module fixtures (a Ray instance, a dashboard server, fitted models),
# and the workers share one model cache. Files go out in tests/conftest.py's order, the slowest
# first.
# The suite also passes without xdist: `python3 -m pytest -p no:xdist`.
python3 -m pytest -q -ra -n logical --maxprocesses 4 --dist loadfile --no-loadscope-reorder "$@"
