#!/usr/bin/env bash
# Serve a plan with `advisor serve` on the GPU machine of the device tool (synthetic weights, one
# replica on its GPU) and load-test it over loopback at each RATE in turn, writing into $OUT:
#   $OUT/<name>-r<rate>.json (each run, measured only: `advisor loadtest --reanalyze` adds the
#   predictions here), $OUT/<name>.log (the load tests' console) and $OUT/<name>-serve.log.
# As scripts/device_loadtest.sh, the wheels travel in $WHEELS; Ray is too large for one call's
# carry as a wheel, so it travels as a tarball of the wheel's files without ray/jars (Java
# workers), ray/dashboard/client and ray/rllib, unpacked next to the wheels:
#   scripts/ray_slim.sh 2.60.0 DIR   (DIR: the wheel folder; see data/loadtests/README.md)
#
# Usage: scripts/device_serve.sh PLAN.yaml NAME RATE...
# Environment: WHEELS (default .whl), GPU (catalog id, default h100-sxm-80gb), DURATION_S (each
# run's measured arrivals, default 80), WARMUP_S (default 5), ENGINE (ray or local, default ray;
# with ray, a server that does not come up falls back to local and says so), PORT (8000),
# SERVE_ARGS (more `advisor serve` flags, e.g. "--tiny --device cpu" for a dry run on a CPU).
set -uo pipefail
: "${OUT:?OUT must name the folder for the results}"
plan=${1:?usage: scripts/device_serve.sh PLAN.yaml NAME RATE...}
name=${2:?usage: scripts/device_serve.sh PLAN.yaml NAME RATE...}
shift 2
WHEELS=${WHEELS:-.whl}
GPU=${GPU:-h100-sxm-80gb}
DURATION_S=${DURATION_S:-80}
WARMUP_S=${WARMUP_S:-5}
ENGINE=${ENGINE:-ray}
PORT=${PORT:-8000}
SERVE_ARGS=${SERVE_ARGS:-}
cd "$(dirname "$0")/.."

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  for t in "$WHEELS"/*.tar.xz; do [ -e "$t" ] && { tar -xJf "$t" -C /tmp/site || exit 1; }; done
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader

start_server() {  # $1: engine; waits until the server says where it listens (at most 400 s)
  # shellcheck disable=SC2086
  python3 -m advisor serve --plan "$plan" --engine "$1" --weights synthetic --port "$PORT" \
    $SERVE_ARGS >>"$OUT/$name-serve.log" 2>&1 &
  server=$!
  for _ in $(seq 400); do
    grep -q "POST http" "$OUT/$name-serve.log" && return 0
    kill -0 "$server" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

stop_server() {
  kill -INT "$server" 2>/dev/null
  for _ in $(seq 30); do kill -0 "$server" 2>/dev/null || return; sleep 1; done
  kill -KILL "$server" 2>/dev/null
}

begin=$SECONDS
if ! start_server "$ENGINE"; then
  stop_server
  [ "$ENGINE" = ray ] || { tail -30 "$OUT/$name-serve.log"; exit 1; }
  echo "Ray Serve did not come up (log: $name-serve.log); serving without Ray (--engine local)" \
    | tee -a "$OUT/$name.log"
  tail -15 "$OUT/$name-serve.log"
  start_server local || { tail -30 "$OUT/$name-serve.log"; exit 1; }
fi
echo "server up after $((SECONDS - begin)) s" | tee -a "$OUT/$name.log"

# One prompt of 64 words: 64 caption tokens with the synthetic pipeline's word tokenizer, the
# caption length the plan was made for.
prompt=$(printf 'photo %.0s' $(seq 64))
body="{\"prompt\": \"${prompt% }\", \"height\": \"\$height\", \"width\": \"\$width\", \"output\": \"size\"}"
status=0
for rate in "$@"; do
  python3 -m advisor loadtest --url "http://127.0.0.1:$PORT/generate" --body "$body" \
    --plan "$plan" --rate "$rate" --gpu "$GPU" --no-predict --no-progress \
    --duration-s "$DURATION_S" --warmup-s "$WARMUP_S" \
    --limit-s "$((DURATION_S + WARMUP_S + 5))" \
    --name "$name-r$rate" --out "$OUT/$name-r$rate.json" 2>&1 | tee -a "$OUT/$name.log"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
stop_server
exit "$status"
