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
        bars.append(Bar(f"{low:.0f}–{high:.0f}", count, round(100 * count / top, 1), limit is not None and low >= limit))
    return bars


def label_bars(counts: dict[str, int] | None) -> list[Bar]:
    if not counts:
        return []
    top = max(counts.values()) or 1
    return [Bar(label, count, round(100 * count / top, 1)) for label, count in counts.items()]


def profile_context(profile: dict[str, Any]) -> dict[str, Any]:
    tokens = profile.get("tokens") or {}
    return {
        "char_bars": histogram_bars((profile.get("char_lengths") or {}).get("histogram")),
        "token_bars": histogram_bars(tokens.get("histogram"), tokens.get("max_length")),
        "label_bars": label_bars((profile.get("labels") or {}).get("counts")),
        "tag_bars": label_bars(profile.get("tags")),
        "truncated_percent": round(100 * tokens.get("truncated_share", 0.0), 1),
    }
