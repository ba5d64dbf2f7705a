#!/usr/bin/env bash
# The prepared GPU run: every GPU check and benchmark in one call on a lent H100/H200, ~6-8 min
# (see README "Benchmarks"). Results land in $OUT (or bench/results when run by hand).
#   0. installs the few wheels the GPU image lacks, carried in .whl/ (pydantic and its deps;
#      pytest, pluggy, iniconfig for step 1): `pip download --only-binary :all: -d .whl ...`,
#   1. the CUDA-path tests (tests/study_tests/core_tests/test_cuda_paths.py): the CUDA-graph leaky scan
#      equals the eager loop (forward, BPTT, whole epochs), the bfloat16 critic on CUDA agrees
#      with float32, an epoch's finiteness checks are one host sync and still raise,
#   2. both tasks, both networks and the K>2 / MINE paths train on CUDA (gpu_smoke.py),
#   3. paper-wm seconds per epoch at S = 1, 16, 64, float32 and bfloat16 critics, each eager
#      and with CUDA graphs (STUDY_CUDA_GRAPHS=1), interleaved in one run, with a profile of
#      one epoch per path (kernel time against wall time, launches, host syncs), the full-trial
#      and phase-wm grid estimates, and an evaluation's share of a cpu-wm trial
#      (bench_precision.py).
# Each step's failure is reported and the next one still runs; the exit status is the first
# failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
if ! python3 -c "import pydantic" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu.sh: pydantic is missing and .whl/ holds no wheels to install it from" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export STUDY_CACHE=/tmp/mistudy-cache PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
status=0
step() {  # step NAME CMD...: run, keep going, remember the first failure
  local name=$1
  shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@"
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if python3 -c "import pytest" 2>/dev/null; then
  step cuda-tests timeout 150 python3 -m pytest -q -p no:cacheprovider -rs \
    tests/study_tests/core_tests/test_cuda_paths.py --junitxml "$OUT/cuda-tests.xml"
else
  echo "== cuda-tests: skipped (no pytest in the image or .whl/)"
fi
step smoke timeout 120 python3 bench/gpu_smoke.py --out "$OUT/gpu-smoke.json"
step precision timeout 360 python3 bench/bench_precision.py --device cuda --seeds 1 16 64 \
  --epochs 2 --graphs --threads 8 --eval-share cpu-wm --out "$OUT/precision-gpu.json"
exit $status
