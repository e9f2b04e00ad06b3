#!/usr/bin/env bash
# The GPU check: everything a lent GPU machine should run, as one script, in under 8
# minutes, writing its figures as JSON. Device time is short, so nothing is tried by
# hand there: the suite runs this same script with --dry-run on CPU (tiny sizes),
# so that a typo cannot waste it.
#
#   bash benchmarks/gpu_check.sh              # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run    # anywhere: tiny sizes, CPU allowed
#
# What it runs, each part under its own time limit:
#   1. the suite (tests marked cpu_only skip on a GPU, each with its reason);
#   2. layer 24 at the write-up's defaults on a batch of maps, extrapolated to the
#      layer's 512 maps, with useful FLOP/s and the share of the device's peak
#      (benchmarks/bench_layer.py);
#   3. the lucid recipe against lucent's render_vis on the same GPU
#      (benchmarks/bench_recipes.py).
# Figures go to $JAXVIZ_GPU_CHECK_OUT (default benchmarks/results), the log to
# gpu_check.log there. Wheels of packages the machine lacks (dm-pix, torch-lucent,
# kornia 0.4.1, horama, platformdirs) may be carried in .whl/; they are installed
# into /tmp/site without resolving dependencies (torch-lucent pins old kornia).
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
out="${JAXVIZ_GPU_CHECK_OUT:-benchmarks/results}"
mkdir -p "$out"
log="$out/gpu_check.log"
: > "$log"
python="${PYTHON:-python3}"

if compgen -G ".whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >> "$log" 2>&1 || { echo "wheel install failed" >&2; exit 1; }
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:$PWD/benchmarks:${PYTHONPATH:-}"
# jaxviz_convert is the folder convert/ (pyproject's package-dir), without an install.
mkdir -p /tmp/jaxviz-gpu-check
ln -sfn "$PWD/convert" /tmp/jaxviz-gpu-check/jaxviz_convert
export PYTHONPATH="/tmp/jaxviz-gpu-check:$PYTHONPATH"
export PYTHONUNBUFFERED=1 JAXVIZ_GPU_CHECK=1

if (( dry )); then
  tests=(tests/test_ops.py -k "normalise or under_jit")
  layer=(--layer 2 --maps 2 --size0 16 --scales 2 --steps 2)
  lucid=(--layer 2 --maps 2 --steps 2 --size 16)
  limits=(120 120 120)
else
  tests=(tests)
  layer=(--layer 24 --maps 32)
  lucid=(--layer 24 --maps 16 --steps 128)
  limits=(240 150 90)
fi

failed=0
part() {  # part NAME LIMIT COMMAND...: runs it under a time limit, logs, remembers failure
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s): $*" | tee -a "$log"
  local began=$SECONDS
  timeout "$limit" "$@" >> "$log" 2>&1
  local code=$?
  echo "== $name: exit $code after $((SECONDS - began)) s" | tee -a "$log"
  (( code == 0 )) || failed=1
}

"$python" -c "import jax; print('devices:', jax.devices())" 2>&1 | tee -a "$log"
part tests "${limits[0]}" "$python" -m pytest -q -x -p no:cacheprovider \
  "${tests[@]}"
part layer "${limits[1]}" "$python" benchmarks/bench_layer.py "${layer[@]}" \
  --json "$out/gpu_layer.json"
part lucid "${limits[2]}" "$python" benchmarks/bench_recipes.py "${lucid[@]}" \
  --json "$out/gpu_lucid_vs_lucent.json"
tail -n 40 "$log"
exit "$failed"
