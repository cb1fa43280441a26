"""One run in several processes on one machine: `accelerate launch` starts them (FSDP or DDP), rank 0 reports back.

The worker calls `run_distributed` for a spec whose `num_processes` is above 1. Each launched process runs `main`:
the engine's `train` with a `FileReporter`. The two sides share one scratch folder:

    spec.json          the spec, written by the worker
    accelerate.json    accelerate's launch config (`launch_config`)
    events.jsonl       what rank 0 reports (progress, phases, checkpoints), one JSON object a line
    stop               written by the worker when the job is cancelled; every rank reads it
    result.json        rank 0's TrainingResult, written once its artifact is saved
    failure-<rank>.json  the error of a process that failed
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from jobs.training.spec import (
    DatasetFiles,
    Hyperparameters,
    Reporter,
    RunWork,
    SpecError,
    TrainingResult,
    TrainingSpec,
    TrainingSummary,
)

logger = logging.getLogger(__name__)

SPEC_FILE = "spec.json"
CONFIG_FILE = "accelerate.json"
EVENTS_FILE = "events.jsonl"
STOP_FILE = "stop"
RESULT_FILE = "result.json"
# The launched processes end themselves when the worker that started them is gone (killed with SIGKILL, say):
# a re-queued job must not meet a leftover run writing into the same checkpoint folder.
PARENT_PID_ENV = "LAYERCAKE_LAUNCHED_BY"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LaunchFailed(RuntimeError):
    """A launched training process failed; the message names its error as that process saw it."""


def _json_default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)  # paths


def _to_json(instance: Any, leave_out: str) -> str:
    """A dataclass as JSON (nested dataclasses as objects, paths as strings), but for its field `leave_out`."""
    values = {item.name: getattr(instance, item.name) for item in fields(instance) if item.name != leave_out}
    return json.dumps(values, default=_json_default)


def spec_to_json(spec: TrainingSpec) -> str:
    """The spec as JSON, for a process of its own (`on_checkpoint`, a callable, stays behind)."""
    return _to_json(spec, leave_out="on_checkpoint")


def spec_from_json(text: str) -> TrainingSpec:
    raw = json.loads(text)
    return TrainingSpec(
        **{
            **raw,
            "base_model_dir": Path(raw["base_model_dir"]),
            "datasets": [
                DatasetFiles(d["name"], Path(d["train"]), Path(d["validation"]) if d["validation"] else None)
                for d in raw["datasets"]
            ],
            "hyperparameters": Hyperparameters(**raw["hyperparameters"]),
            "output_dir": Path(raw["output_dir"]),
            "checkpoint_dir": Path(raw["checkpoint_dir"]),
        }
    )


# FSDP2 (`fully_shard`): each decoder block is one unit, found by the model's own `_no_split_modules` (the blocks
# transformers never splits across devices; accelerate adds the embeddings and the final norm + head as units of their
# own); weights, gradients and optimizer state are divided between the processes and a unit's weights are gathered for
# its forward and again for its backward (reshard after forward: full shard). Checkpoints hold each process's shard
# (SHARDED_STATE_DICT: no process gathers the whole model for them, and a resume reads them back in the same
# processes); the artifact is gathered on rank 0 by the engine. Activation checkpointing stays the engine's
# (TrainingArguments), which Trainer refuses beside FSDP's own.
FSDP_CONFIG: dict[str, Any] = {
    "fsdp_version": 2,
    "fsdp_reshard_after_forward": True,
    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    "fsdp_state_dict_type": "SHARDED_STATE_DICT",
    "fsdp_offload_params": False,
    "fsdp_cpu_ram_efficient_loading": False,
    "fsdp_activation_checkpointing": False,
}


def launch_config(num_processes: int, device: str, parallelism: str = "ddp") -> dict[str, Any]:
    """accelerate's config for `num_processes` processes of one run on this machine, one process per GPU over NCCL on
    CUDA, over gloo on the CPU: DDP, or FSDP for `parallelism` "fsdp" (`execution.choose_parallelism`).

    The run's own config, so an operator's `accelerate config` defaults cannot change it. accelerate's MULTI_CPU type
    needs MPI; its torchrun launcher (MULTI_GPU, FSDP) starts CPU processes just as well, and those take gloo because
    the engine's TrainingArguments ask for the CPU. Mixed precision stays "no" here: the engine's arguments decide it.
    """
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_processes": num_processes,
        "num_machines": 1,
        "machine_rank": 0,
        "gpu_ids": "all",
        "main_process_port": 0,  # accelerate picks a free port: two runs on one worker must not meet
        "mixed_precision": "no",
        "use_cpu": device != "cuda",
        "debug": False,
    }
    if parallelism == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = dict(FSDP_CONFIG)
    return config


def cpu_cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_capacity(num_processes: int, device: str) -> None:
    """Refuse a run that this machine cannot host: a GPU per process, or a core per process on the CPU."""
    if device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        if num_processes > gpus:
            raise SpecError(f"This job asks for {num_processes} processes, one per GPU, but this worker has {gpus} GPUs.")
    elif num_processes > cpu_cores():
        raise SpecError(f"This job asks for {num_processes} processes but this CPU worker has {cpu_cores()} cores.")


def _environment(device: str, num_processes: int) -> dict[str, str]:
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
    # `-m jobs.training.launch` must import from this project whatever the worker's current folder is.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    if device != "cuda":
        env["ACCELERATE_USE_CPU"] = "true"
        # The processes share the cores: torch's default of a thread per core in each would thrash.
        env["OMP_NUM_THREADS"] = str(max(1, cpu_cores() // num_processes))
    return env


class FileReporter:
    """The reporter of one launched process: rank 0 appends what happens to the events file; every rank reads the
    stop flag (the engine makes the ranks agree on it before acting)."""

    def __init__(self, folder: Path, main_process: bool) -> None:
        self.folder = folder
        self.main_process = main_process

    def _append(self, event: dict[str, Any]) -> None:
        if self.main_process:
            with (self.folder / EVENTS_FILE).open("a") as handle:
                handle.write(json.dumps(event) + "\n")

    def progress(
        self,
        step: int,
        total_steps: int,
        epoch: float,
        loss: float | None,
        learning_rate: float | None,
        metrics: dict[str, float],
    ) -> None:
        self._append(
            {"event": "progress", "step": step, "total_steps": total_steps, "epoch": epoch, "loss": loss,
             "learning_rate": learning_rate, "metrics": metrics}
        )

    def phase(self, name: str, done: int, total: int, work: RunWork | None) -> None:
        self._append({"event": "phase", "name": name, "done": done, "total": total, "work": asdict(work) if work else None})

    def checkpoint(self, folder: Path) -> None:
        self._append({"event": "checkpoint", "folder": str(folder)})

    def should_stop(self) -> bool:
        return (self.folder / STOP_FILE).exists()


class EventRelay:
    """The worker's side: hands rank 0's events to the job's reporter and checkpoint hook as they come."""

    def __init__(self, folder: Path, reporter: Reporter, spec: TrainingSpec) -> None:
        self.path = folder / EVENTS_FILE
        self.reporter = reporter
        self.spec = spec
        self.offset = 0

    def relay(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        # A line still being written waits for the next read.
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            self._handle(json.loads(line))

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.pop("event")
        if kind == "progress":
            self.reporter.progress(
                event["step"], event["total_steps"], event["epoch"], event["loss"], event["learning_rate"],
                event["metrics"],
            )
        elif kind == "phase":
            announce = getattr(self.reporter, "phase", None)
            if announce is not None:
                work = event["work"]
                announce(event["name"], event["done"], event["total"], RunWork(**work) if work else None)
        elif kind == "checkpoint" and self.spec.on_checkpoint is not None:
            # Trainer may rotate the folder away before this runs (steps faster than the relay): the hook then finds
            # nothing to copy and the next checkpoint goes up instead.
            self.spec.on_checkpoint(Path(event["folder"]))


def _result_from_json(text: str) -> TrainingResult:
    raw = json.loads(text)
    return TrainingResult(
        **{
            **raw,
            "artifact_dir": Path(raw["artifact_dir"]) if raw["artifact_dir"] else None,
            "summary": TrainingSummary(**raw["summary"]),
        }
    )


def _failure(folder: Path, returncode: int) -> Exception:
    """The error to raise for a launch that ended without a result."""
    reports = list(folder.glob("failure-*.json"))
    if not reports:
        return LaunchFailed(f"The training processes ended with status {returncode} and no error (out of memory?).")
    # The first to fail is the cause; the others mostly report losing it (a collective cut short).
    failure = json.loads(min(reports, key=lambda path: path.stat().st_mtime_ns).read_text())
    if failure["type"] == "SpecError":
        return SpecError(failure["messages"])
    return LaunchFailed(f"{failure['type']} in training process {failure['rank']}: {failure['message']}")


def _end(process: subprocess.Popen[bytes]) -> None:
    """Stop the launcher; torchrun's agent in it stops the processes it started."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()  # the processes then see their launcher gone and end themselves (`_exit_when_orphaned`)
        process.wait()


def run_distributed(spec: TrainingSpec, reporter: Reporter, poll_seconds: float = 0.2) -> TrainingResult:
    """Run the spec in `spec.hyperparameters.num_processes` processes through `accelerate launch`, relaying rank 0's
    progress to `reporter` and its cancel to the processes; returns rank 0's result (without the model in memory).

    Raises SpecError (a process found the spec cannot work, or this machine cannot host the run) or LaunchFailed.
    """
    from jobs.training.execution import choose_parallelism
    from jobs.training.methods import resolve_device

    processes = spec.hyperparameters.num_processes
    device = resolve_device(spec.device)
    check_capacity(processes, device)
    parallelism = choose_parallelism(spec.task, spec.method, processes)
    with tempfile.TemporaryDirectory(prefix="layercake-launch-") as scratch:
        folder = Path(scratch)
        (folder / SPEC_FILE).write_text(spec_to_json(spec))
        (folder / CONFIG_FILE).write_text(json.dumps(launch_config(processes, device, parallelism)))
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(folder / CONFIG_FILE),
            "-m", "jobs.training.launch", str(folder),
        ]
        logger.info("[job %s] launching %d %s processes (%s)", spec.job_id or "-", processes, device, parallelism.upper())
        relay = EventRelay(folder, reporter, spec)
        process = subprocess.Popen(command, env=_environment(device, processes))
        try:
            stop_sent = False
            while process.poll() is None:
                relay.relay()
                if not stop_sent and reporter.should_stop():
                    (folder / STOP_FILE).touch()
                    stop_sent = True
                time.sleep(poll_seconds)
            relay.relay()
        finally:
            if process.poll() is None:  # the worker is being stopped, or relaying failed
                _end(process)
        result = folder / RESULT_FILE
        if process.returncode != 0 or not result.exists():
            raise _failure(folder, process.returncode)
        return _result_from_json(result.read_text())


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists() and _signalable(pid)  # no /proc: ask the kernel
    return state not in ("Z", "X")


def _signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        pass
    return True


def _exit_when_orphaned(worker_pid: int | None, interval: float = 2.0) -> None:
    """End this process once the worker that launched the run, or the launcher between them, is gone.

    A worker killed with SIGKILL cannot stop what it started (torchrun runs each process in a session of its own),
    and its job is re-queued: a leftover run must not go on writing into the job's checkpoint folder.
    """
    launcher = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != launcher or (worker_pid is not None and not _alive(worker_pid)):
                logger.warning("the worker or the launcher of this run is gone; ending")
                os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def main(folder: Path) -> int:
    """One launched process: train the spec in `folder`; rank 0 writes the events and the result."""
    import torch

    from jobs.training.engine import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rank = int(os.environ.get("RANK", "0"))
    _exit_when_orphaned(int(os.environ[PARENT_PID_ENV]) if os.environ.get(PARENT_PID_ENV) else None)
    spec = spec_from_json((folder / SPEC_FILE).read_text())
    if os.environ.get("ACCELERATE_USE_CPU") != "true" and torch.cuda.is_available():
        # This process's GPU from the start: what loads before Trainer places the model (a 4-bit QLoRA base is
        # quantized as it loads) lands on the current device.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    reporter = FileReporter(folder, main_process=rank == 0)
    spec.on_checkpoint = reporter.checkpoint  # the engine calls it on rank 0 only
    try:
        result = train(spec, reporter)
    except Exception as error:
        failure: dict[str, Any] = {"rank": rank, "type": type(error).__name__, "message": str(error)}
        if isinstance(error, SpecError):
            logger.warning("[job %s] training process %d: invalid: %s", spec.job_id or "-", rank, error)
            failure["messages"] = error.messages
        else:
            logger.exception("[job %s] training process %d failed", spec.job_id or "-", rank)
        (folder / f"failure-{rank}.json").write_text(json.dumps(failure))
        return 1
    if rank == 0:
        # Whole or not at all: the worker reads it once the processes have ended.
        partial = folder / f"{RESULT_FILE}.partial"
        partial.write_text(_to_json(result, leave_out="model"))
        partial.rename(folder / RESULT_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
