#!/usr/bin/env bash
# On the GPU host, from the project root: install whichever wheel folders were carried (bench/gpu/fetch_wheels.sh)
# into /tmp/site, then run the engine benchmark, and the worker path when Django's wheels came along.
# Results under $OUT (the device tool brings them back). BENCH_GPU_LIMIT_S bounds the benchmark.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  $(ls .gpu/*/*.whl) || exit 1
export PYTHONPATH=/tmp/site:$PWD OUT="${OUT:-$PWD/bench/out}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
python3 bench/bench_gpu.py --out "$OUT" 2>&1 | tee "$OUT/bench_gpu.log"
if ls .gpu/worker/*.whl >/dev/null 2>&1; then
  python3 bench/gpu_worker_path.py --out "$OUT" 2>&1 | tail -60 | tee "$OUT/worker_path.log"
fi
