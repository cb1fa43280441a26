"""bench/bench_gpu.py --tiny, the CPU smoke test of the GPU benchmark: every case runs or says why it was skipped."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench_gpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("BENCH_GPU_LIMIT_S", None)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--tiny", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert (out / "bench_gpu.txt").exists()
    return json.loads((out / "bench_gpu.json").read_text())


def _case(results: dict, method: str) -> dict:
    return next(case for case in results["cases"] if case["method"] == method)


def test_tiny_run_has_a_case_per_method(tiny_results: dict) -> None:
    assert [case["method"] for case in tiny_results["cases"]] == ["lora", "full", "freeze", "qlora"]


@pytest.mark.parametrize("method", ["lora", "full", "freeze"])
def test_engine_and_bare_loop_train_the_same_parameters(tiny_results: dict, method: str) -> None:
    case = _case(tiny_results, method)
    assert case["status"] == "ok", case["errors"]
    assert case["engine"]["tokens_per_s"] > 0
    assert case["bare"]["tokens_per_s"] > 0
    assert case["engine"]["trainable_parameters"] == case["bare"]["trainable_parameters"]
    assert math.isfinite(case["estimate_over_engine_peak"]) and case["estimate_over_engine_peak"] > 0


@pytest.mark.parametrize("method", ["lora", "full", "freeze"])
def test_plan_and_bare_loop_run_without_checkpointing_when_it_fits(tiny_results: dict, method: str) -> None:
    case = _case(tiny_results, method)
    assert case["plan"]["activation_checkpointing"] is False
    assert case["plan"]["changes"] == []
    assert case["bare"]["activation_checkpointing"] is False
    assert case["bare"]["loss_head"] == "fused"


def test_qlora_is_skipped_on_cpu_with_the_reason(tiny_results: dict) -> None:
    case = _case(tiny_results, "qlora")
    assert case["status"].startswith("skipped")
    assert "CUDA" in case["status"]
    assert case["engine"] is None and case["bare"] is None


def test_targets_are_listed_but_not_judged_on_a_tiny_run(tiny_results: dict) -> None:
    assert len(tiny_results["targets"]) == 5
    assert {target["verdict"] for target in tiny_results["targets"]} == {"not measured"}
