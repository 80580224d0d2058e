#!/usr/bin/env bash
# Run `advisor loadtest` on the GPU machine of the device tool, writing into $OUT:
#   $OUT/<name>.json (the results) and $OUT/<name>.log (the console output).
# As scripts/device_probe.sh: the machine has torch, transformers, accelerate, nvidia-ml-py,
# PyYAML, numpy, scipy, tqdm and psutil but no diffusers and no internet; the wheels travel in
# .whl/ (bash ../shared/device/wheels.sh, then name .whl in the run's carry list).
#
# Usage: scripts/device_loadtest.sh NAME [advisor loadtest arguments...]
# Environment: WHEELS (default .whl), GPU (catalog id, default h200-sxm-141gb).
# Defaults added unless given: --gpu $GPU --weights synthetic --no-progress. Each call loads
# the pipeline once (about a minute with synthetic weights), warms it (two calls per batch size
# and resolution), then serves warm-up + duration seconds of arrivals: keep
# warm-up + duration + ~3 minutes under the 600 s command limit (--limit-s bounds the loop).
set -uo pipefail
: "${OUT:?OUT must name the folder for the results}"
name=${1:?usage: scripts/device_loadtest.sh NAME [advisor loadtest arguments]}
shift
WHEELS=$(realpath "${WHEELS:-.whl}")
GPU=${GPU:-h200-sxm-141gb}
cd "$(dirname "$0")/.."

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader
python3 -m advisor loadtest --gpu "$GPU" --weights synthetic --no-progress \
  --name "$name" --out "$OUT/$name.json" "$@" 2>&1 | tee "$OUT/$name.log"
exit "${PIPESTATUS[0]}"
