"""What each task does beyond its row in the registry: one module per task, named after it, exposing `KIND`.

The registry says what a task is (its shapes, model class, methods, trainer family); the task's module here says
how it trains and answers: how its rows become tokens and labels, its collator, its metrics, what the playground and
the merge proof ask of a model trained for it, and the model card's snippet. The engine, the catalog and the
playground call these hooks instead of testing task names, so a new task is a registry row, a module here and the
dataset side's module (`webapp.datasets.kinds`).

No torch at import: the web process imports these modules to read the card snippets and metric names.
"""

from __future__ import annotations

import importlib
from functools import cache

from jobs.training import registry
from jobs.training.tasks.base import CausalKind, Evaluation, TaskKind

__all__ = ["CausalKind", "Evaluation", "TaskKind", "causal_kind", "import_training_modules", "kind", "metric_names"]


@cache
def kind(task: str) -> TaskKind:
    """The task's hooks (`jobs.training.tasks.<task>.KIND`)."""
    if task not in registry.TASK_TABLE:
        raise KeyError(f"Unknown task '{task}'")
    module = importlib.import_module(f"{__name__}.{task}")
    found: TaskKind = module.KIND
    return found


def causal_kind(task: str) -> CausalKind:
    """The hooks of a task the SFTTrainer or a preference trainer trains (a causal language model's)."""
    found = kind(task)
    if not isinstance(found, CausalKind):
        raise TypeError(f"Task '{task}' does not train a causal language model.")
    return found


def import_training_modules() -> None:
    """Load what every task's training hooks import lazily (a training worker's imports, done before any run)."""
    for task in registry.TASKS:
        for module in kind(task).training_imports:
            importlib.import_module(module)


def metric_names() -> dict[str, str]:
    """Every task's metric keys with the names people read."""
    names: dict[str, str] = {}
    for task in registry.TASKS:
        names.update(kind(task).metric_names)
    return names
