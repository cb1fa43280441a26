"""Each training task's data in one module, `kinds/<task>.py` (its `KIND`): canonical columns, normalization,
row checks, profile extras and how its page shows it. No Django here.

A kind is found by the registry's task name, so a new task needs no edit in this package beyond its module.
Task modules load on first use: they import `shapes`, which asks this package for kinds.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from jobs.training import registry

if TYPE_CHECKING:
    from webapp.datasets.kinds.base import DatasetKind


@cache
def of_task(task: str) -> DatasetKind:
    """The kind of a registry task; LookupError for a task of no registry row or with no module here."""
    if task not in registry.TASK_TABLE:
        raise LookupError(f"Unknown task `{task}`: the registry's tasks are {', '.join(registry.TASKS)}.")
    name = f"{__name__}.{task}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise LookupError(f"Task `{task}` has no dataset kind: add webapp/datasets/kinds/{task}.py with its KIND.") from None
    kind: DatasetKind = module.KIND
    return kind


def of_shape(shape: str) -> DatasetKind:
    """The kind of the task a registry shape feeds."""
    return of_task(registry.SHAPE_TABLE[shape].task)
