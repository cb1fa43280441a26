"""Plain inputs and outputs of the training engine: the spec, the result, the reporter protocol, the errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TASKS = ("sft", "text", "classification", "token_classification", "seq2seq")
METHODS = ("full", "freeze", "lora", "qlora", "prompt_tuning", "head")
PRESETS = ("quick", "balanced", "thorough")

# Which methods make sense for which task. prompt_tuning is kept to causal LMs (peft supports more,
# but a soft prompt on a classifier rarely beats a LoRA head and the form should not offer it);
# head needs a new head, which generative tasks do not have.
METHODS_BY_TASK: dict[str, tuple[str, ...]] = {
    "sft": ("full", "freeze", "lora", "qlora", "prompt_tuning"),
    "text": ("full", "freeze", "lora", "qlora", "prompt_tuning"),
    "classification": ("full", "freeze", "lora", "qlora", "head"),
    "token_classification": ("full", "freeze", "lora", "qlora", "head"),
    "seq2seq": ("full", "freeze", "lora", "qlora"),
}

# Methods whose artifact is an adapter on top of the base rather than a new full model.
ADAPTER_METHODS = ("lora", "qlora", "prompt_tuning")


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


@dataclass
class Hyperparameters:
    """Every knob of a run. API.md names first; `resolve_hyperparameters` fills them from a preset."""

    epochs: float = 3.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    max_length: int = 512
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 42
    eval_fraction: float = 0.1
    packing: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None
    trainable_layers: int = 2
    prompt_init_text: str | None = None
    num_virtual_tokens: int = 16
    preset: str = "balanced"
    gradient_accumulation_steps: int = 1
    early_stopping_patience: int | None = None
    save_steps: int = 50
    # Rows of each validation split that an evaluation reads (a seeded sample): the base ("before") and the final
    # evaluation read the same ones, so their cost stays bounded however large the split is.
    eval_max_rows: int = 200
    # A cap on optimizer steps (None: the epochs decide); the quick preset uses it to give a first result in minutes.
    max_steps: int | None = None
    # Recompute activations in the backward pass: a third slower, far less memory. Off unless the job's plan finds
    # that it does not fit without it (jobs.training.memory.fit_to_memory).
    activation_checkpointing: bool = False

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


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
