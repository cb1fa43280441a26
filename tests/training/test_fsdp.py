"""Full fine-tuning in several processes is sharded (FSDP2, full shard): it trains as one process does with the same
global batch, checkpoints each process's shard, resumes from them, and rank 0 alone writes a plain safetensors model.

The runs are real `accelerate launch` runs of CPU processes over gloo (accelerate turns FSDP on only for GPU process
groups; the engine sets it up on the CPU, `engine._configure_fsdp_on_cpu`). A worker with several GPUs takes the same
engine path with NCCL; that path has not run here (the GPU machine at hand has one GPU).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils.launch import prepare_multi_gpu_env
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from transformers import AutoModelForCausalLM

from jobs.training import Hyperparameters, TrainingResult, resolve_hyperparameters
from jobs.training.engine import train
from jobs.training.execution import plan_execution
from jobs.training.launch import launch_config, run_distributed
from jobs.training.memory import GiB, fit_to_memory, parameter_counts
from tests.training.conftest import instruction_rows, make_spec
from tests.training.test_distributed import Recorder, estimate_per_process
from tests.training.test_memory_estimate import H100, LLAMA_1B

# No dropout in the tiny Llama; 4 steps, a checkpoint every 2.
SETTINGS: dict[str, Any] = {"max_length": 32, "max_steps": 4, "save_steps": 2}


@dataclass
class Runs:
    """One full fine-tune run alone at batch 4, and in two FSDP processes at batch 2 each."""

    alone: Recorder
    one: TrainingResult
    relayed: Recorder
    two: TrainingResult
    two_spec: Any
    logs: str


@contextmanager
def _stderr_into(path: Path) -> Iterator[None]:
    """The launched processes' logs (they inherit this process's stderr) into `path`."""
    saved = os.dup(2)
    with path.open("w") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path) -> Runs:
    folder = tmp_path_factory.mktemp("fsdp")
    rows = instruction_rows(32)
    alone = Recorder()
    one = train(make_spec(folder / "one", tiny_lm, "sft", "full", rows, batch_size=4, **SETTINGS), alone)
    spec = make_spec(folder / "two", tiny_lm, "sft", "full", rows, batch_size=2, num_processes=2, **SETTINGS)
    relayed = Recorder()
    with _stderr_into(folder / "launch.log"):
        two = run_distributed(spec, relayed)
    return Runs(alone, one, relayed, two, spec, (folder / "launch.log").read_text())


def _final_weights(checkpoint: Path, scratch: Path) -> dict[str, torch.Tensor]:
    """The whole model as the processes' shards in a checkpoint hold it, read without a process group."""
    dcp_to_torch_save(checkpoint / "pytorch_model_fsdp_0", scratch / "whole.pt")
    return torch.load(scratch / "whole.pt", weights_only=True)["model"]


def _logits(model: Any) -> torch.Tensor:
    ids = torch.randint(1, 600, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


@pytest.mark.slow
def test_two_fsdp_processes_follow_one_process_at_equal_global_batch(runs: Runs) -> None:
    assert [step for step, _ in runs.relayed.losses] == [1, 2, 3, 4]
    assert [loss for _, loss in runs.relayed.losses] == pytest.approx([loss for _, loss in runs.alone.losses], rel=1e-4)
    assert runs.two.summary.global_step == runs.one.summary.global_step == 4
    assert runs.two.summary.tokens_seen == runs.one.summary.tokens_seen
    assert runs.two.metrics["tuned"]["main"]["loss"] == pytest.approx(runs.one.metrics["tuned"]["main"]["loss"], rel=1e-2)
    assert runs.logs.count("FSDP, full shard, 2 processes") == 2  # each process says how it runs


@pytest.mark.slow
def test_checkpoints_hold_each_process_shard_of_weights_and_optimizer(runs: Runs) -> None:
    checkpoint = runs.two_spec.checkpoint_dir / "checkpoint-4"
    for state in ("pytorch_model_fsdp_0", "optimizer_0"):
        assert {"__0_0.distcp", "__1_0.distcp"} <= {path.name for path in (checkpoint / state).iterdir()}
    assert not list(checkpoint.glob("*.safetensors"))  # no process gathered the whole model for a checkpoint


@pytest.mark.slow
def test_rank_zero_alone_writes_a_plain_safetensors_model_with_the_final_weights(runs: Runs, tmp_path: Path) -> None:
    artifact = runs.two.artifact_dir
    assert artifact is not None
    assert runs.logs.count("Base metrics") == 2 and runs.logs.count("Artifact written to") == 1
    assert (artifact / "model.safetensors").exists() and not list(artifact.glob("*.bin"))
    assert json.loads((artifact / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    execution = json.loads((artifact / "training_args.json").read_text())["execution"]
    assert (execution["parallelism"], execution["parallelism_label"]) == ("fsdp", "FSDP, full shard, 2 processes")

    loaded = AutoModelForCausalLM.from_pretrained(artifact)
    final = _final_weights(runs.two_spec.checkpoint_dir / "checkpoint-4", tmp_path)
    assert set(loaded.state_dict()) == set(final)
    assert all(torch.equal(value, final[name]) for name, value in loaded.state_dict().items())
    # The same logits as the model at the end of training, and as the single process's.
    at_end = AutoModelForCausalLM.from_pretrained(runs.two_spec.base_model_dir)
    at_end.load_state_dict(final)
    assert torch.equal(_logits(loaded), _logits(at_end))
    assert runs.one.model is not None
    torch.testing.assert_close(_logits(loaded), _logits(runs.one.model), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_killed_fsdp_run_resumes_from_its_sharded_checkpoint(runs: Runs, tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path, runs.two_spec.base_model_dir, "sft", "full", instruction_rows(32), batch_size=2, num_processes=2,
        **SETTINGS,
    )
    # What a worker killed after step 3 leaves: the checkpoint of step 2.
    shutil.copytree(runs.two_spec.checkpoint_dir / "checkpoint-2", spec.checkpoint_dir / "checkpoint-2")
    relayed = Recorder()
    resumed = run_distributed(spec, relayed)

    assert resumed.summary.resumed_from_step == 2
    assert [step for step, _ in relayed.losses] == [3, 4]
    assert [loss for _, loss in relayed.losses] == pytest.approx([loss for _, loss in runs.relayed.losses[2:]], rel=1e-5)
    assert resumed.artifact_dir is not None and runs.two.artifact_dir is not None
    again = AutoModelForCausalLM.from_pretrained(resumed.artifact_dir).state_dict()
    first = AutoModelForCausalLM.from_pretrained(runs.two.artifact_dir).state_dict()
    assert all(torch.equal(value, first[name]) for name, value in again.items())


def test_full_fine_tuning_of_a_causal_lm_is_sharded_and_everything_else_stays_on_ddp() -> None:
    def plan(task: str, method: str, processes: int) -> str:
        return plan_execution(task, method, "llama", "cuda", capabilities=H100, num_processes=processes).parallelism_label

    assert plan("sft", "full", 4) == plan("text", "full", 4) == plan("preference", "full", 4) == (
        "FSDP, full shard, 4 processes"
    )
    assert {plan("sft", method, 2) for method in ("lora", "qlora", "prompt_tuning", "freeze")} == {"DDP, 2 processes"}
    # Encoders and seq2seq models are small, and FSDP2 does not shard their embeddings (execution.choose_parallelism).
    assert plan("classification", "full", 2) == plan("seq2seq", "full", 2) == "DDP, 2 processes"
    assert plan("sft", "full", 1) == "1 process"


def test_the_fsdp_launch_config_reaches_the_processes_as_fsdp2_full_shard_by_transformer_block(tmp_path: Path) -> None:
    path = tmp_path / "accelerate.json"
    path.write_text(json.dumps(launch_config(4, "cuda", "fsdp")))
    config = load_config_from_file(str(path))
    assert (config.distributed_type.value, config.num_processes, config.use_cpu) == ("FSDP", 4, False)
    # What `accelerate launch --config_file` exports to each process it starts (torchrun's environment).
    args, _, _ = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(path), "-m", "jobs.training.launch", "x"])
    )
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "true"  # full shard
    # No class named: accelerate wraps the model's own `_no_split_modules` (LlamaDecoderLayer, T5Block...).
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env
    assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
    assert env["FSDP_OFFLOAD_PARAMS"] == env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"
    assert launch_config(4, "cuda")["distributed_type"] == "MULTI_GPU"  # DDP otherwise


def test_fsdp_divides_weights_gradients_and_optimizer_state_between_the_processes() -> None:
    one, four = estimate_per_process(LLAMA_1B, "full", 1), estimate_per_process(LLAMA_1B, "full", 4)
    counts = parameter_counts(LLAMA_1B, "text", "full", Hyperparameters(), 2, None)
    block = counts.block_linear / 16
    # A quarter of the 16 bytes a parameter, plus what is whole for a moment: the root unit (embeddings) and two blocks
    # gathered in bf16, and one block's fp32 gradients before their reduce-scatter.
    gathered = (counts.total - counts.block_linear + 2 * block) * 2 + block * 4
    states = four.weights + four.gradients + four.optimizer_state
    assert states == pytest.approx((one.weights + one.gradients + one.optimizer_state) / 4 + gathered, rel=1e-6)
    assert four.activations == one.activations  # each process still runs its own micro-batch through every block
    assert four.total < one.total / 2


def test_a_full_fine_tune_too_big_for_one_gpu_fits_four_under_fsdp() -> None:
    def fit(processes: int) -> Any:
        hp = resolve_hyperparameters("text", "full", 1, {"batch_size": 4, "max_length": 1024, "num_processes": processes})
        return fit_to_memory(LLAMA_1B, "text", "full", hp, "cuda", 12 * GiB, capabilities=H100)

    assert not fit(1).fits
    four = fit(4)
    assert four.fits and four.hyperparameters.batch_size == 4
    assert four.execution.parallelism_label == "FSDP, full shard, 4 processes"
