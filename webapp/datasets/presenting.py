"""Turns a stored profile into rows a template can draw (bar widths, labels) without logic in templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webapp.datasets import kinds
from webapp.datasets.kinds.base import DatasetKind
from webapp.datasets.shapes import DETECTION_ORDER, EXPECTED_COLUMNS, OPTIONAL_COLUMNS, SHAPE_COLUMNS, TASK_OF_SHAPE


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    percent: float  # width of the bar, relative to the largest one
    over: bool = False  # past the maximum length: would be truncated


def histogram_bars(histogram: dict[str, Any] | None, limit: float | None = None) -> list[Bar]:
    if not histogram or not histogram.get("counts"):
        return []
    edges, counts = histogram["bins"], histogram["counts"]
    overflow = int(histogram.get("overflow") or 0)
    top = max([*counts, overflow]) or 1
    bars = []
    for index, count in enumerate(counts):
        low, high = edges[index], edges[index + 1]
        label = f"{low}" if high - low == 1 else f"{low}–{high - 1}"
        bars.append(Bar(label, count, round(100 * count / top, 1), limit is not None and high - 1 > limit))
    if overflow:
        bars.append(Bar(f"≥ {edges[-1]}", overflow, round(100 * overflow / top, 1), limit is not None and edges[-1] > limit))
    return bars


def label_bars(counts: dict[str, int] | None) -> list[Bar]:
    if not counts:
        return []
    top = max(counts.values()) or 1
    return [Bar(label, count, round(100 * count / top, 1)) for label, count in counts.items()]


def _kind(shape: str) -> DatasetKind:
    """The kind of a dataset's shape; one not checked yet (no shape) gets the defaults."""
    return kinds.of_shape(shape) if shape in SHAPE_COLUMNS else DatasetKind()


def profile_context(profile: dict[str, Any], preview: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    """What the dataset page draws of a profile; `profile_template` names the task's own block (or is None)."""
    kind = _kind(shape)
    tokens = profile.get("tokens") or {}
    return {
        "previews": preview_rows(preview, shape),
        "char_bars": histogram_bars((profile.get("char_lengths") or {}).get("histogram")),
        "token_bars": histogram_bars(tokens.get("histogram"), tokens.get("max_length")),
        **{name: label_bars(counts) for name, counts in kind.charted_counts(profile).items()},
        "truncated_percent": round(100 * tokens.get("truncated_share", 0.0), 1),
        "over_limit_effect": kind.over_limit_effect,
        "profile_template": kind.profile_template,
    }


@dataclass(frozen=True)
class PreviewRow:
    rendered: str
    chat_template: bool
    fields: list[tuple[str, str]]  # what the rendered text leaves out: labels, tags, targets


def preview_rows(preview: list[dict[str, Any]], shape: str) -> list[PreviewRow]:
    shown_in_text = _kind(shape).rendered_columns
    rows = []
    for item in preview:
        fields = [
            (key, " ".join(map(str, value)) if isinstance(value, list) else str(value))
            for key, value in (item.get("row") or {}).items()
            if key not in shown_in_text
        ]
        rows.append(PreviewRow(str(item.get("rendered", "")), bool(item.get("chat_template")), fields))
    return rows


@dataclass(frozen=True)
class MappingRow:
    field: Any  # the settings form's bound field `map_<expected>`
    expected: str
    optional: bool


def expected_columns(shape: str, task: str) -> list[str]:
    """The expected columns worth offering: those of the dataset's shape, else of its task, else all."""
    if shape in SHAPE_COLUMNS:
        return list(SHAPE_COLUMNS[shape])
    if task:
        names = [name for candidate in DETECTION_ORDER if TASK_OF_SHAPE[candidate] == task for name in SHAPE_COLUMNS[candidate]]
        return list(dict.fromkeys(names))
    return list(EXPECTED_COLUMNS)


def mapping_rows(form: Any, shape: str, task: str) -> tuple[list[MappingRow], list[MappingRow]]:
    """The mapping table's rows for this dataset's shape or task, then the other expected columns (kept in
    the form, folded away on the page, so switching to another shape stays possible)."""
    shown = expected_columns(shape, task)
    rows = {name: MappingRow(form[f"map_{name}"], name, name in OPTIONAL_COLUMNS) for name in EXPECTED_COLUMNS}
    return [rows[name] for name in shown], [rows[name] for name in EXPECTED_COLUMNS if name not in shown]
