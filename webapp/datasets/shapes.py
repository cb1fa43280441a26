"""Which shape a table has (API.md's column names, case-insensitive) and which training task it serves."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from jobs.training import registry
from webapp.datasets import kinds
from webapp.lib.errors import LayercakeError

SHAPES = registry.SHAPES
TASKS = registry.TASKS
# The expected columns of each shape, required ones first.
SHAPE_COLUMNS: dict[str, tuple[str, ...]] = {name: shape.columns for name, shape in registry.SHAPE_TABLE.items()}
OPTIONAL_COLUMNS = {name for shape in registry.SHAPE_TABLE.values() for name in shape.optional}
TASK_OF_SHAPE = {name: shape.task for name, shape in registry.SHAPE_TABLE.items()}
# Tried in the registry's order: the most specific shapes first, so text+label is classification, not text.
DETECTION_ORDER = registry.SHAPES
EXPECTED_COLUMNS = sorted({name for names in SHAPE_COLUMNS.values() for name in names})


class ShapeMismatch(LayercakeError):
    """The columns fit no shape, or not the declared task."""


@dataclass(frozen=True)
class Shape:
    name: str
    task: str
    column_of: dict[str, str]  # expected column -> the file's column (absent optional ones left out)


def required_columns(shape: str) -> tuple[str, ...]:
    return registry.SHAPE_TABLE[shape].required


@cache
def column_aliases() -> dict[str, tuple[str, ...]]:
    """Other tools' names for an expected column (each task's kind knows its own), used when the expected name
    itself is absent."""
    aliases: dict[str, tuple[str, ...]] = {}
    for task in TASKS:
        for expected, names in kinds.of_task(task).column_aliases.items():
            aliases[expected] = (*aliases.get(expected, ()), *names)
    return aliases


def resolve_columns(columns: list[str], mapping: dict[str, str] | None = None) -> dict[str, str]:
    """Expected name -> file column: the user's mapping first, then a case-insensitive match."""
    by_lower = {column.strip().lower(): column for column in columns}
    resolved: dict[str, str] = {}
    for expected, source in (mapping or {}).items():
        if expected not in EXPECTED_COLUMNS:
            raise ShapeMismatch(f"Cannot map onto `{expected}`: expected columns are {', '.join(EXPECTED_COLUMNS)}.")
        if not source:
            continue
        actual = by_lower.get(source.strip().lower())
        if actual is None:
            raise ShapeMismatch(f"Column `{source}` (mapped to `{expected}`) is not in the file.")
        resolved[expected] = actual
    mapped_sources = set(resolved.values())
    for expected in EXPECTED_COLUMNS:
        for name in (expected, *column_aliases().get(expected, ())):
            actual = by_lower.get(name)
            if expected not in resolved and actual is not None and actual not in mapped_sources:
                resolved[expected] = actual
    return resolved


def detect_shape(columns: list[str], declared_task: str = "", mapping: dict[str, str] | None = None) -> Shape:
    """The shape of a table from its column names; ShapeMismatch says what is missing and how to fix it."""
    if declared_task and declared_task not in TASKS:
        raise ShapeMismatch(f"Unknown task `{declared_task}`: choose one of {', '.join(TASKS)}.")
    resolved = resolve_columns(columns, mapping)
    candidates = [shape for shape in DETECTION_ORDER if all(name in resolved for name in required_columns(shape))]
    if declared_task:
        fitting = [shape for shape in candidates if TASK_OF_SHAPE[shape] == declared_task]
        if not fitting:
            raise ShapeMismatch(_task_misfit(declared_task, columns, resolved, candidates))
        candidates = fitting
    if not candidates:
        raise ShapeMismatch(_no_shape(columns, resolved))
    shape = candidates[0]
    column_of = {name: resolved[name] for name in SHAPE_COLUMNS[shape] if name in resolved}
    return Shape(shape, TASK_OF_SHAPE[shape], column_of)


def _listing(columns: list[str]) -> str:
    shown = ", ".join(f"`{column}`" for column in columns[:12])
    return shown + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")


def _missing_message(shape: str, resolved: dict[str, str]) -> str | None:
    required = required_columns(shape)
    missing = [name for name in required if name not in resolved]
    present = [name for name in required if name in resolved]
    if not missing or not present:
        return None
    needs = " and ".join(required)
    article = "an" if shape[0] in "aeiou" else "a"
    return f"column `{missing[0]}` missing: {article} {shape.replace('_', ' ')} dataset needs {needs}"


def _borrows_names(shape: str) -> bool:
    """Whether a column of the shape answers to another shape's column name."""
    aliases = column_aliases()
    return any(alias in EXPECTED_COLUMNS for name in SHAPE_COLUMNS[shape] for alias in aliases.get(name, ()))


def _no_shape(columns: list[str], resolved: dict[str, str]) -> str:
    # Shapes whose columns answer to other shapes' names last: preference's `prompt` also answers to
    # `instruction` or `input`, so a half instruction file would otherwise read as a half preference file.
    for shape in sorted(DETECTION_ORDER, key=_borrows_names):
        message = _missing_message(shape, resolved)
        if message:
            return message[0].upper() + message[1:] + " (or map your columns onto them)."
    *others, last = [" + ".join(f"`{name}`" for name in required_columns(shape)) for shape in DETECTION_ORDER]
    return (
        f"No known dataset shape in columns {_listing(columns)}: expected {'; '.join(others)}; or {last} "
        "(map your columns onto them)."
    )


def _task_misfit(task: str, columns: list[str], resolved: dict[str, str], candidates: list[str]) -> str:
    shapes = [shape for shape in DETECTION_ORDER if TASK_OF_SHAPE[shape] == task]
    for shape in shapes:
        message = _missing_message(shape, resolved)
        if message:
            return f"Task `{task}` does not fit this file: {message}."
    wants = " or ".join(" + ".join(f"`{name}`" for name in required_columns(shape)) for shape in shapes)
    found = f" (it looks like {candidates[0].replace('_', ' ')} data)" if candidates else ""
    return f"Task `{task}` needs columns {wants}; the file has {_listing(columns)}{found}."
