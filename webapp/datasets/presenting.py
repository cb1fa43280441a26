"""Turns a stored profile into rows a template can draw (bar widths, labels) without logic in templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
    top = max(counts) or 1
    bars = []
    for index, count in enumerate(counts):
        low, high = edges[index], edges[index + 1]
        label = f"{low}" if high - low == 1 else f"{low}–{high - 1}"
        bars.append(Bar(label, count, round(100 * count / top, 1), limit is not None and high - 1 > limit))
    return bars


def label_bars(counts: dict[str, int] | None) -> list[Bar]:
    if not counts:
        return []
    top = max(counts.values()) or 1
    return [Bar(label, count, round(100 * count / top, 1)) for label, count in counts.items()]


def profile_context(profile: dict[str, Any], preview: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    tokens = profile.get("tokens") or {}
    return {
        "previews": preview_rows(preview, shape),
        "char_bars": histogram_bars((profile.get("char_lengths") or {}).get("histogram")),
        "token_bars": histogram_bars(tokens.get("histogram"), tokens.get("max_length")),
        "label_bars": label_bars((profile.get("labels") or {}).get("counts")),
        "tag_bars": label_bars(profile.get("tags")),
        "truncated_percent": round(100 * tokens.get("truncated_share", 0.0), 1),
    }


@dataclass(frozen=True)
class PreviewRow:
    rendered: str
    chat_template: bool
    fields: list[tuple[str, str]]  # what the rendered text leaves out: labels, tags, targets


def preview_rows(preview: list[dict[str, Any]], shape: str) -> list[PreviewRow]:
    shown_in_text = {"text", "source", "tokens", "messages", "instruction", "input", "output"}
    rows = []
    for item in preview:
        fields = [
            (key, " ".join(map(str, value)) if isinstance(value, list) else str(value))
            for key, value in (item.get("row") or {}).items()
            if key not in shown_in_text
        ]
        rows.append(PreviewRow(str(item.get("rendered", "")), bool(item.get("chat_template")), fields))
    return rows
