#!/usr/bin/env bash
# The prepared GPU run (one call on a lent H100/H200; see README "Benchmarks"):
#   - installs the few wheels the GPU image lacks (carried in .whl/),
#   - checks that both tasks, both networks and the K>2 / MINE paths train on CUDA,
#   - times paper-wm and cpu-wm epochs at S = 1, 16, 64 on CUDA (bench_train.py).
# Results land in $OUT (or bench/results when run by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results}
if ! python3 -c "import pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export MISTUDY_CACHE=/tmp/mistudy-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu_smoke.py --out "$OUT/gpu-smoke.json"
python3 bench/bench_train.py --device cuda --presets cpu-wm paper-wm --seeds 1 16 64 \
  --epochs 3 --out "$OUT/train-gpu.json"
