"""Formatting for model figures: parameter counts as 134.5M, sizes as 512.3 MB."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def parameters(count: int | None) -> str:
    if not count:
        return "–"
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= threshold:
            return f"{count / threshold:.1f}{suffix}"
    return str(count)


@register.filter
def megabytes(size: int | None) -> str:
    if not size:
        return "–"
    if size >= 1e9:
        return f"{size / 1e9:.2f} GB"
    if size >= 1e6:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e3:.1f} KB"
