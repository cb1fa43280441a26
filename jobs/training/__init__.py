"""The training engine: a TrainingSpec in, a fine-tuned artifact folder and a TrainingResult out (no Django)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.training.memory import MemoryEstimate, estimate_memory, estimate_run_memory
from jobs.training.presets import resolve_hyperparameters, validate_overrides
from jobs.training.registry import METHODS, METHODS_BY_TASK, TASKS
from jobs.training.spec import (
    DatasetFiles,
    Hyperparameters,
    NullReporter,
    Reporter,
    SpecError,
    TrainingResult,
    TrainingSpec,
    TrainingSummary,
)

if TYPE_CHECKING:
    from jobs.training.engine import train

__all__ = [
    "METHODS",
    "METHODS_BY_TASK",
    "TASKS",
    "DatasetFiles",
    "Hyperparameters",
    "MemoryEstimate",
    "NullReporter",
    "Reporter",
    "SpecError",
    "TrainingResult",
    "TrainingSpec",
    "TrainingSummary",
    "estimate_memory",
    "estimate_run_memory",
    "resolve_hyperparameters",
    "train",
    "validate_overrides",
]


def __getattr__(name: str) -> Any:
    # `train` pulls in transformers, peft and TRL (seconds of imports); the web process only needs the spec,
    # the presets and the memory estimate, so the engine loads on first use.
    if name == "train":
        from jobs.training.engine import train

        return train
    raise AttributeError(name)
