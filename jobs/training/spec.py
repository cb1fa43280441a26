"""Plain inputs and outputs of the training engine: the spec, the result, the reporter protocol, the errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

PRESETS = ("quick", "balanced", "thorough")


class SpecError(ValueError):
    """A training spec that cannot work; `messages` are sentences a person can act on."""

    def __init__(self, messages: list[str] | str) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


@dataclass
class DatasetFiles:
    """One normalized dataset: Parquet files per split, written by the datasets app."""

    name: str
    train: Path
    validation: Path | None = None


def knob(
    default: Any,
    types: tuple[type, ...],
    help_text: str,
    bounds: tuple[float, float] | None = None,
    form: str = "",
) -> Any:
    """One hyperparameter's whole definition: default, accepted types, inclusive range and help text. The dataclass
    below, override validation (`presets.validate_overrides`), the wizard's advanced fields (`form`: "int" or
    "float" to offer it there) and the API schema all read it."""
    return field(default=default, metadata={"types": types, "help": help_text, "range": bounds, "form": form})


_NUMBER = (int, float)


@dataclass
class Hyperparameters:
    """Every knob of a run. API.md names first; `resolve_hyperparameters` fills them from a preset."""

    epochs: float = knob(3.0, _NUMBER, "Passes over the training rows.", (0.01, 100), form="float")
    learning_rate: float = knob(2e-4, _NUMBER, "Step size of the optimizer (AdamW).", (1e-7, 1.0), form="float")
    batch_size: int = knob(8, (int,), "Rows per micro-batch on the device.", (1, 1024), form="int")
    max_length: int = knob(512, (int,), "Tokens per sequence; longer rows are cut or split.", (8, 131072), form="int")
    warmup_ratio: float = knob(0.05, _NUMBER, "Share of steps spent warming the learning rate up.", (0.0, 0.5), form="float")
    weight_decay: float = knob(0.0, _NUMBER, "AdamW's weight decay.", (0.0, 1.0), form="float")
    seed: int = knob(42, (int,), "Seed of the split, the shuffling and new weights.", (0, 2**32 - 1), form="int")
    eval_fraction: float = knob(
        0.1, _NUMBER, "Share of rows held out as the validation split (datasets without their own).", (0.01, 0.5),
        form="float",
    )
    packing: bool = knob(True, (bool,), "Pack several short rows into one sequence (causal LMs).")
    lora_r: int = knob(16, (int,), "LoRA rank.", (1, 1024), form="int")
    lora_alpha: int = knob(32, (int,), "LoRA scale numerator (the update is scaled by alpha / r).", (1, 4096), form="int")
    lora_dropout: float = knob(0.05, _NUMBER, "Dropout on LoRA's input.", (0.0, 0.9), form="float")
    target_modules: list[str] | None = knob(
        None, (list, str, type(None)), "LoRA target modules: a list of names or 'all-linear' (default: per architecture)."
    )
    trainable_layers: int = knob(2, (int,), "Method freeze: how many of the last layers train.", (1, 1000), form="int")
    prompt_init_text: str | None = knob(None, (str, type(None)), "Prompt tuning starts from this natural-language prompt.")
    num_virtual_tokens: int = knob(16, (int,), "Prompt tuning: length of the soft prompt.", (1, 512), form="int")
    preset: str = knob("balanced", (str,), "quick, balanced or thorough: the defaults every other value starts from.")
    gradient_accumulation_steps: int = knob(
        1, (int,), "Micro-batches per optimizer step (the effective batch is their product).", (1, 1024)
    )
    early_stopping_patience: int | None = knob(
        None, (int, type(None)), "Stop after this many evaluations without improvement.", (1, 100)
    )
    save_steps: int = knob(50, (int,), "A checkpoint every this many optimizer steps.", (1, 1_000_000))
    # Rows of each validation split that an evaluation reads (a seeded sample): the base ("before") and the final
    # evaluation read the same ones, so their cost stays bounded however large the split is.
    eval_max_rows: int = knob(
        200, (int,), "Validation rows each evaluation reads (the same sample before and after).", (1, 1_000_000),
        form="int",
    )
    # A cap on optimizer steps (None: the epochs decide); the quick preset uses it to give a first result in minutes.
    max_steps: int | None = knob(
        None, (int, type(None)), "A cap on optimizer steps (empty: the epochs decide).", (1, 10_000_000), form="int"
    )
    # Recompute activations in the backward pass: a third slower, far less memory. Off unless the job's plan finds
    # that it does not fit without it (jobs.training.memory.fit_to_memory).
    activation_checkpointing: bool = knob(
        False, (bool,), "Recompute activations in the backward pass: a third slower, far less memory."
    )
    # Above 1 the worker starts the run through `accelerate launch` (jobs.training.launch): FSDP for full fine-tuning
    # of a causal LM (weights, gradients and optimizer state sharded), else DDP (a whole copy of the model in each
    # process); each process reads batch_size rows per micro-batch, so a step reads num_processes x batch_size rows.
    num_processes: int = knob(
        1, (int,), "Processes training the job together on one worker: one per GPU (FSDP for full fine-tuning, else "
        "DDP), or up to a CPU worker's cores; each reads batch_size rows per micro-batch.", (1, 64), form="int",
    )
    # Preference tuning only.
    objective: str = knob("dpo", (str,), "Preference tuning: dpo, orpo, kto (also takes unpaired rows) or simpo.")
    beta: float = knob(
        0.1, _NUMBER, "Preference tuning: how far from the base the model may move (DPO/KTO), ORPO's odds-ratio weight.",
        (0.001, 10.0), form="float",
    )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# name -> the knob's metadata (types, help, range, form), in declaration order.
HYPERPARAMETERS: dict[str, Any] = {item.name: item.metadata for item in fields(Hyperparameters)}


@dataclass
class TrainingSpec:
    """Everything one training run needs, with no reference to the database."""

    base_model_dir: Path
    task: str
    method: str
    datasets: list[DatasetFiles]
    hyperparameters: Hyperparameters
    output_dir: Path
    checkpoint_dir: Path
    device: str = "auto"
    # Name written into adapter_config.json and the model card; the folder path when empty.
    base_model_name: str | None = None
    # Carried into every log line so a worker's logs can be tied to its job.
    job_id: str | None = None
    # A checkpoint every this many seconds of training as well as every save_steps, so that a killed run loses
    # at most about this much work however long its steps are (0 turns the timed checkpoints off).
    checkpoint_seconds: float = 60.0
    # Called with each checkpoint folder once Trainer has written it whole (optimizer, scheduler and RNG state
    # included), on the main process; a worker with remote storage uploads it (jobs.checkpoint_store). Training
    # waits for it: it must return at once and never raise.
    on_checkpoint: Callable[[Path], None] | None = None


@dataclass
class DatasetPlan:
    """One dataset's rows as the run uses them."""

    name: str
    train_rows: int
    validation_rows: int
    eval_rows: int  # the sample every evaluation reads (at most eval_max_rows)
    # "dataset": the dataset's own validation split (eval_fraction does not apply); "held_out": eval_fraction of it.
    validation_source: str


@dataclass
class RunPlan:
    """What a run will do, counted by the engine's own code before any model is loaded (`engine.plan_run`)."""

    datasets: list[DatasetPlan]
    train_rows: int  # rows in the training mixture, after the multi-task cap
    train_examples: int  # sequences per epoch as the trainer sees them: after packing and TRL's filtering
    steps: int  # optimizer steps
    trainable_parameters: int
    total_parameters: int
    eval_rows: int  # rows read by one evaluation, all datasets together
    # False when a large dataset's examples were counted on a sample and scaled (the run counts them all).
    exact: bool = True

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# The phases of a run, in order. The engine announces each through Reporter.phase; the worker adds "registering".
PHASES = ("loading", "evaluating_base", "training", "evaluating", "saving", "registering")


@dataclass
class RunWork:
    """How much work each phase holds, announced once the data is prepared: what an honest ETA is computed from."""

    eval_batches: int  # batches in one evaluation (the base and the final one read the same sample)
    eval_tokens: int  # tokens in one evaluation
    train_steps: int  # optimizer steps left to run (fewer than planned when resuming)
    tokens_per_step: int  # tokens in one optimizer step (micro-batches x accumulation), on average
    # A training step's cost in forward passes over the same tokens: the forward, the backward to the activations
    # (about one more), and the weight gradients (one more, for the share of weights that train): ~2 LoRA, ~3 full.
    train_cost: float = 3.0


@dataclass
class TrainingSummary:
    """How the run went, in numbers the catalog and the benchmarks show."""

    tokens_seen: int = 0
    real_tokens: int = 0
    tokens_per_second: float = 0.0
    peak_memory_bytes: int = 0
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    trainable_parameters: int = 0
    total_parameters: int = 0
    global_step: int = 0
    resumed_from_step: int = 0
    # What the run actually used, to hold against the plan the review page showed.
    train_rows: int = 0
    train_examples: int = 0
    planned_steps: int = 0
    eval_rows: int = 0
    # Seconds per phase (loading, evaluating_base, training, evaluating, saving).
    phase_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingResult:
    """What `train` returns; `artifact_dir` is None when the run was stopped before the end."""

    artifact_dir: Path | None
    metrics: dict[str, Any]
    summary: TrainingSummary
    stopped: bool = False
    kind: str = "adapter"  # "adapter" or "full": what the catalog records
    log_history: list[dict[str, Any]] = field(default_factory=list)
    # The trained model, still in memory (eval mode, on the training device); lets a caller use it at once without
    # reloading. Workers should drop the result's reference to free the memory.
    model: Any = field(default=None, repr=False, compare=False)


class Reporter(Protocol):
    """The worker's side of a run: it records progress and answers whether to stop (cancel)."""

    def progress(
        self,
        step: int,
        total_steps: int,
        epoch: float,
        loss: float | None,
        learning_rate: float | None,
        metrics: dict[str, float],
    ) -> None: ...

    def should_stop(self) -> bool: ...


class PhaseReporter(Reporter, Protocol):
    """A reporter that also hears which phase the run is in; the engine calls `phase` only where it exists.

    `done` of `total` counts eval batches while evaluating and is 0 of 1 elsewhere (training steps come through
    `progress`). `work` is given from the moment the data is prepared, and stays the same for the run.
    """

    def phase(self, name: str, done: int, total: int, work: RunWork | None) -> None: ...


class NullReporter:
    """A reporter that records nothing and never stops; for tests, benchmarks and scripts."""

    def progress(
        self,
        step: int,
        total_steps: int,
        epoch: float,
        loss: float | None,
        learning_rate: float | None,
        metrics: dict[str, float],
    ) -> None:
        return None

    def should_stop(self) -> bool:
        return False

    def phase(self, name: str, done: int, total: int, work: RunWork | None) -> None:
        return None
