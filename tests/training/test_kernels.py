"""Optional kernels and activation checkpointing: used only where they run, broken installs reported once."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.training import engine, execution
from jobs.training.engine import train
from jobs.training.execution import Capabilities, local_capabilities, plan_execution
from tests.training.conftest import chat_rows, make_spec

GPU_WITH_LIGER = Capabilities(cuda=True, bf16=True, liger_kernel=True)
GPU_WITHOUT_LIGER = Capabilities(cuda=True, bf16=True)


def test_liger_never_runs_on_cpu_even_where_it_is_installed() -> None:
    for capabilities in (Capabilities(liger_kernel=True), GPU_WITH_LIGER):
        assert not plan_execution("sft", "lora", "llama", "cpu", capabilities=capabilities).liger


def test_liger_runs_on_cuda_for_llama_when_installed() -> None:
    planned = plan_execution("sft", "lora", "llama", "cuda", capabilities=GPU_WITH_LIGER)
    assert planned.liger
    assert not any("liger" in note.lower() for note in planned.notes)


def test_liger_stays_off_for_architectures_it_does_not_fuse() -> None:
    for capabilities in (GPU_WITH_LIGER, GPU_WITHOUT_LIGER):
        planned = plan_execution("classification", "lora", "bert", "cuda", capabilities=capabilities)
        assert not planned.liger
        # Nothing to miss: BERT has no Liger kernels, so a missing liger-kernel is not worth a note.
        assert not any("liger" in note.lower() for note in planned.notes)


def test_missing_liger_on_a_gpu_worker_is_noted() -> None:
    planned = plan_execution("sft", "lora", "llama", "cuda", capabilities=GPU_WITHOUT_LIGER)
    assert not planned.liger
    assert any("liger" in note.lower() for note in planned.notes)


@pytest.fixture
def broken_liger(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """liger-kernel is installed on a GPU worker but fails to import (say, built for another torch)."""
    real_find_spec, real_import_module = importlib.util.find_spec, importlib.import_module

    def find_spec(name: str, *args: Any, **kwargs: Any) -> ModuleSpec | None:
        if name == "liger_kernel":
            return ModuleSpec(name, None)
        if name in ("flash_attn", "bitsandbytes"):
            return None
        return real_find_spec(name, *args, **kwargs)

    def import_module(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("liger_kernel"):
            raise OSError("liger_kernel/ops/fused.so: undefined symbol: _ZN3c104cuda9SetDeviceEa")
        return real_import_module(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    # A fresh process as far as the probe goes: nothing cached, nothing warned yet.
    monkeypatch.setattr(execution, "_warned", set())
    local_capabilities.cache_clear()
    yield
    local_capabilities.cache_clear()


def _warnings_about(caplog: pytest.LogCaptureFixture, module: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno == logging.WARNING and module in record.getMessage()]


def test_kernel_that_fails_to_import_counts_as_missing_and_is_logged_once(
    broken_liger: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=execution.__name__)
    assert execution._imports("liger_kernel.transformers") is False
    assert execution._imports("liger_kernel.transformers") is False
    assert len(_warnings_about(caplog, "liger_kernel.transformers")) == 1


def test_gpu_worker_with_a_broken_liger_install_plans_without_it(
    broken_liger: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=execution.__name__)
    capabilities = local_capabilities()
    assert capabilities.cuda and not capabilities.liger_kernel
    local_capabilities.cache_clear()  # probe again, as a second job's plan would in a process without the cache
    assert not local_capabilities().liger_kernel
    assert len(_warnings_about(caplog, "liger_kernel")) == 1

    planned = plan_execution("sft", "lora", "llama", "cuda", capabilities=capabilities)
    assert not planned.liger and any("liger" in note.lower() for note in planned.notes)


def test_missing_and_working_modules_are_told_apart_without_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=execution.__name__)
    assert execution._imports("json") is True
    assert execution._imports("layercake_no_such_kernel.ops") is False
    assert not caplog.records


@dataclass
class CheckpointingRun:
    """What one tiny sft run did about activation checkpointing."""

    trainer_arguments: dict[str, Any]
    global_step: int
    # Calls into the first block's MLP with autograd on: once per step, twice when the backward pass recomputes the
    # block. Counted on entry: hooks on the block itself sit outside transformers' checkpoint, and torch stops a
    # recomputation as soon as it has the activations it needs, before the MLP would return.
    block_forwards: int


def _run_tiny_sft(tmp_path: Path, base: Path, activation_checkpointing: bool) -> CheckpointingRun:
    block_forwards = 0
    prepare = engine.prepare_model

    def prepare_and_count(*args: Any, **kwargs: Any) -> Any:
        model = prepare(*args, **kwargs)
        first_mlp = next(module for name, module in model.named_modules() if name.endswith("layers.0.mlp"))

        def count(module: torch.nn.Module, args: Any) -> None:
            nonlocal block_forwards
            if module.training and torch.is_grad_enabled():
                block_forwards += 1

        first_mlp.register_forward_pre_hook(count)
        return model

    spec = make_spec(
        tmp_path,
        base,
        "sft",
        "lora",
        chat_rows(8),
        epochs=1,
        batch_size=4,
        activation_checkpointing=activation_checkpointing,
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(engine, "prepare_model", prepare_and_count)
        result = train(spec)
    assert result.artifact_dir is not None
    training_args = json.loads((result.artifact_dir / "training_args.json").read_text())
    assert training_args["execution"]["activation_checkpointing"] is activation_checkpointing
    return CheckpointingRun(training_args["trainer"], result.summary.global_step, block_forwards)


@pytest.fixture(scope="module")
def checkpointing_runs(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[bool, CheckpointingRun]:
    return {
        enabled: _run_tiny_sft(tmp_path_factory.mktemp(f"ckpt-{enabled}"), tiny_lm, enabled)
        for enabled in (False, True)
    }


def test_activation_checkpointing_stays_off_unless_asked(checkpointing_runs: dict[bool, CheckpointingRun]) -> None:
    run = checkpointing_runs[False]
    assert run.trainer_arguments["activation_checkpointing"] is False
    assert run.global_step > 0 and run.block_forwards == run.global_step


def test_activation_checkpointing_recomputes_every_block_when_asked(
    checkpointing_runs: dict[bool, CheckpointingRun],
) -> None:
    run = checkpointing_runs[True]
    assert run.trainer_arguments["activation_checkpointing"] is True
    assert run.global_step > 0 and run.block_forwards == 2 * run.global_step


def test_cpu_run_never_asks_the_trainer_for_liger(checkpointing_runs: dict[bool, CheckpointingRun]) -> None:
    assert all(run.trainer_arguments["use_liger_kernel"] is False for run in checkpointing_runs.values())
