#!/usr/bin/env bash
# Wheels a GPU host needs beside its own torch / transformers image, fetched here (the host reaches no index).
# Writes three folders (git-ignored through .git/info/exclude), because one device call carries at most 64 MiB:
#   .gpu/engine  TRL, datasets, transformers/peft at the lock's versions, liger-kernel  (~20 MB)
#   .gpu/worker  Django, DRF, Celery with the filesystem broker, for bench/gpu_worker_path.py  (~12 MB)
#   .gpu/bnb     bitsandbytes, for the QLoRA cases  (~43 MB)
# Carry .gpu/engine with one of the other two (carry: [".gpu/engine", ".gpu/worker"] or [".gpu/engine", ".gpu/bnb"]).
# Versions come from requirements.lock, so the host runs what CI tests; liger-kernel and bitsandbytes from
# requirements-gpu.txt. Then: bash bench/gpu/run.sh on the host (see bench/bench_gpu.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu/engine .gpu/worker .gpu/bnb
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
# shellcheck disable=SC2086
fetch .gpu/engine $ENGINE
# shellcheck disable=SC2086
fetch .gpu/worker $WORKER
fetch .gpu/bnb bitsandbytes
# Source-only releases: build pure-Python wheels here.
for name in rouge_score seqeval; do python3 -m pip wheel -q --no-deps "$(pin "$name")" -w .gpu/engine; done
du -sh .gpu/engine .gpu/worker .gpu/bnb
