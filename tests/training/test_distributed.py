"""One run in several processes (`accelerate launch`, DDP over gloo on the CPU) trains as one process does with the
same global batch; its main process alone reports and writes the artifact. (Full fine-tuning is sharded instead:
tests/training/test_fsdp.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from jobs.training import SpecError, resolve_hyperparameters
from jobs.training.engine import train
from jobs.training.execution import plan_execution
from jobs.training.launch import (
    EventRelay,
    FileReporter,
    launch_config,
    run_distributed,
    spec_from_json,
    spec_to_json,
)
from jobs.training.memory import MemoryEstimate, ModelShape, estimate_memory
from jobs.training.spec import RunWork
from tests.training.conftest import instruction_rows, make_spec
from tests.training.test_memory_estimate import H100, SMOLLM2


class Recorder:
    """A PhaseReporter that keeps what it hears."""

    def __init__(self) -> None:
        self.losses: list[tuple[int, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self.phases: list[str] = []

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        if loss is not None:
            self.losses.append((step, loss))
        if metrics:
            self.evaluations.append(metrics)

    def phase(self, name: str, done: int, total: int, work: RunWork | None) -> None:
        if not self.phases or self.phases[-1] != name:
            self.phases.append(name)

    def should_stop(self) -> bool:
        return False


@pytest.mark.slow
def test_two_processes_follow_one_process_at_equal_global_batch_and_rank_zero_alone_reports_and_saves(
    tmp_path: Path, tiny_lm: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rows = instruction_rows(32)
    # No dropout: each process draws its own masks, and the trajectories are compared step by step.
    common: dict[str, Any] = {"max_length": 32, "max_steps": 4, "save_steps": 2, "lora_dropout": 0.0}
    alone = Recorder()
    one = train(make_spec(tmp_path / "one", tiny_lm, "sft", "lora", rows, batch_size=4, **common), alone)
    capfd.readouterr()

    spec = make_spec(tmp_path / "two", tiny_lm, "sft", "lora", rows, batch_size=2, num_processes=2, **common)
    checkpoints: list[Path] = []
    spec.on_checkpoint = checkpoints.append
    relayed = Recorder()
    two = run_distributed(spec, relayed)
    logs = capfd.readouterr().err

    # Each step once: only rank 0 writes events.
    assert [step for step, _ in relayed.losses] == [1, 2, 3, 4]
    # Gradients are exchanged: the same steps, the same losses (the processes' weights did not drift apart).
    assert [loss for _, loss in relayed.losses] == pytest.approx([loss for _, loss in alone.losses], rel=1e-4)
    assert two.summary.global_step == one.summary.global_step == two.summary.planned_steps == 4
    assert two.summary.tokens_seen == one.summary.tokens_seen  # both processes' tokens, summed
    assert relayed.phases == ["loading", "evaluating_base", "training", "evaluating", "saving"]
    assert len(relayed.evaluations) == 2  # before and after
    # The evaluation is shared out between the processes and gathered: about the same loss.
    assert two.metrics["tuned"]["main"]["loss"] == pytest.approx(one.metrics["tuned"]["main"]["loss"], rel=1e-2)

    assert two.artifact_dir is not None and (two.artifact_dir / "adapter_config.json").exists()
    assert logs.count("DDP, 2 processes") == 2  # each process says how it runs (LoRA: DDP)
    assert logs.count("Base metrics") == 2  # both processes ran the run...
    assert logs.count("Artifact written to") == 1  # ...and one wrote the artifact
    # Rank 0's checkpoints reach the worker's hook (the S3 upload), with every process's RNG state in them.
    assert [folder.name for folder in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {path.name for path in checkpoints[-1].iterdir()}


def test_a_multi_process_spec_run_in_one_process_is_refused_before_loading(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(8), num_processes=2)
    with pytest.raises(SpecError, match="asks for 2 processes but runs in 1"):
        train(spec)


def test_the_spec_survives_its_trip_to_the_launched_processes(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(
        tmp_path, tiny_lm, "sft", "lora", instruction_rows(8), validation_rows=instruction_rows(4), num_processes=2
    )
    assert spec_from_json(spec_to_json(spec)) == spec


def test_the_launch_config_is_ddp_on_every_gpu_and_gloo_on_the_cpu(tmp_path: Path) -> None:
    for device, on_cpu in (("cuda", False), ("cpu", True)):
        path = tmp_path / f"{device}.json"
        path.write_text(json.dumps(launch_config(4, device)))
        config = load_config_from_file(str(path))  # as `accelerate launch --config_file` reads it
        assert (config.distributed_type.value, config.num_processes, config.use_cpu) == ("MULTI_GPU", 4, on_cpu)
        assert config.main_process_port == 0  # a free port: two runs on one worker must not meet


def estimate_per_process(shape: ModelShape, method: str, processes: int) -> MemoryEstimate:
    """The memory estimate of one process of a `processes`-process run on H100s (a micro-batch of 8 tokens)."""
    hp = resolve_hyperparameters("text", method, 1, {"batch_size": 1, "max_length": 8})
    execution = plan_execution("text", method, "llama", "cuda", capabilities=H100, num_processes=processes)
    return estimate_memory(shape, "text", method, hp, execution)


def test_ddp_holds_one_more_copy_of_the_trainable_gradients_in_its_buckets() -> None:
    one, two = estimate_per_process(SMOLLM2, "lora", 1), estimate_per_process(SMOLLM2, "lora", 2)
    assert two.gradients == 2 * one.gradients == 2 * 4 * one.trainable_parameters
    # Everything else is whole in each process, as it is alone.
    assert (two.weights, two.optimizer_state, two.activations) == (one.weights, one.optimizer_state, one.activations)


def test_the_worker_hears_rank_zero_events_in_order_and_a_half_written_line_waits(tmp_path: Path) -> None:
    heard = Recorder()
    spec_folder: list[Path] = []
    relay = EventRelay(tmp_path, heard, _spec_with_hook(tmp_path, spec_folder.append))
    main, other = FileReporter(tmp_path, main_process=True), FileReporter(tmp_path, main_process=False)
    main.phase("training", 0, 1, RunWork(2, 100, 5, 64))
    main.progress(1, 5, 0.2, 2.5, 1e-3, {})
    other.progress(1, 5, 0.2, 2.5, 1e-3, {})
    main.checkpoint(tmp_path / "checkpoint-1")
    with (tmp_path / "events.jsonl").open("a") as handle:
        handle.write('{"event": "progress", "step": 2, "total_steps": 5, "epoch": 0.4, ')
    relay.relay()
    assert (heard.phases, heard.losses, spec_folder) == (["training"], [(1, 2.5)], [tmp_path / "checkpoint-1"])
    with (tmp_path / "events.jsonl").open("a") as handle:
        handle.write('"loss": 2.4, "learning_rate": 0.001, "metrics": {}}\n')
    relay.relay()
    assert heard.losses == [(1, 2.5), (2, 2.4)]
    assert not main.should_stop()
    (tmp_path / "stop").touch()  # what the worker writes on cancel
    assert main.should_stop() and other.should_stop()


def _spec_with_hook(folder: Path, hook: Any) -> Any:
    spec = make_spec(folder / "spec", folder, "sft", "lora", instruction_rows(4))
    spec.on_checkpoint = hook
    return spec
