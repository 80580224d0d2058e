#!/usr/bin/env bash
# Run `advisor probe` on the GPU machine of the device tool, writing into $OUT:
#   $OUT/<catalog-id>.jsonl (the records) and $OUT/<catalog-id>.log (the console output).
# The machine has torch, transformers, accelerate, nvidia-ml-py, PyYAML, numpy, tqdm and psutil
# but no diffusers and no internet: the wheels travel in .whl/ (bash ../shared/device/wheels.sh,
# then name .whl in the run's carry list). The project runs from the tree, without pip install.
#
# Environment: GRID (default standard), LIMIT_S (soft budget of the probe process in seconds,
# default 530: under the 600 s command limit with room for the install, the catalog look-up and
# a last config slower than forecast), RESUME (a results file to
# continue; default data/measurements/<catalog-id>.jsonl when it exists, or
# data/measurements/capped/<catalog-id>.jsonl for a run under a memory cap), WHEELS (the wheel
# folder, default .whl), EXPECT_GPU (part of the NVML name the run is for, e.g. H200: on another
# GPU the script stops at once with status 3, before the install; a device call for an H200 may
# get an H100). Extra arguments go to `advisor probe` (e.g. --weights synthetic,
# --min-cap, --emulate rtx-4090, --gpus 4). Several GPUs (GRID=data/grids/multi-gpu.yaml on the
# nvidia-h200-x2/-x4 kinds, cache-dit and einops in .whl/): data/measurements/README.md,
# "Several GPUs", has the commands.
set -uo pipefail
: "${OUT:?OUT must name the folder for the results}"
GRID=${GRID:-standard}
LIMIT_S=${LIMIT_S:-530}
WHEELS=$(realpath "${WHEELS:-.whl}")
cd "$(dirname "$0")/.."

if [ -n "${EXPECT_GPU:-}" ]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  if [[ "$gpu" != *"$EXPECT_GPU"* ]]; then
    echo "EXPECT_GPU=$EXPECT_GPU, but this machine's GPU is '$gpu': nothing measured" >&2
    exit 3
  fi
fi

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  "$WHEELS"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader
out=$(python3 -c 'import torch; from advisor.commands.probe import default_out
print(default_out(torch.device("cuda")).name)') || exit 1
measurements=data/measurements
case " $* " in
  *" --min-cap "* | *" --memory-cap-gib "* | *" --emulate "*) measurements=data/measurements/capped ;;
esac
resume=${RESUME:-$measurements/$out}
if [ -f "$resume" ]; then
  cp "$resume" "$OUT/$out" && echo "resuming from $resume"
fi

python3 -m advisor probe --grid "$GRID" --out "$OUT/$out" --limit-s "$LIMIT_S" "$@" 2>&1 \
  | tee "$OUT/${out%.jsonl}.log"
exit "${PIPESTATUS[0]}"
