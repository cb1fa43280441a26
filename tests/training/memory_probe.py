"""Peak RSS growth of one CPU training run, measured in its own process: `python memory_probe.py SPEC_JSON`."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psutil

from jobs.training.engine import train
from jobs.training.launch import spec_from_json


def peak_rss_bytes() -> int:
    """This process's own high-water RSS. Not getrusage's ru_maxrss: on Linux that survives fork and exec,
    so a child of a large pytest process would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    spec = spec_from_json(Path(sys.argv[1]).read_text())
    # Everything is imported; the model is not loaded yet. What the run adds on top is what the estimate predicts.
    before = psutil.Process().memory_info().rss
    result = train(spec)
    peak = peak_rss_bytes()
    print(json.dumps({"before": before, "peak": peak, "increase": peak - before, "steps": result.summary.global_step, "tokens": result.summary.tokens_seen}), flush=True)
    # The figure is out: skip the interpreter's teardown of torch and the rest, about 2 s of each of the many runs.
    os._exit(0)
