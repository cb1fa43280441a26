"""Text classification: `text` and a `label` per row; at least two classes, their balance on the profile."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets.kinds.base import TOP_COUNTS, ProfileExtras
from webapp.datasets.kinds.text import TextKind
from webapp.lib.errors import RowError

# The most common label this many times as frequent as the rarest one: a warning.
IMBALANCE_RATIO = 10.0


class LabelCounts(ProfileExtras):
    """Rows per label; the profile's `labels` (classes, counts, imbalance_ratio)."""

    def __init__(self) -> None:
        self.labels: Counter[str] = Counter()

    def add(self, batch: pa.RecordBatch) -> None:
        labels = batch.column("label")
        # Empty labels are row errors, not a class of their own.
        filled = pc.invert(pc.or_kleene(pc.equal(pc.binary_length(labels), 0), pc.utf8_is_space(labels)))
        for item in pc.value_counts(labels.filter(pc.fill_null(filled, False))).to_pylist():
            self.labels[str(item["values"])] += int(item["counts"])

    def result(self, profile: dict[str, Any], sample: list[dict[str, Any]]) -> None:
        ordered = self.labels.most_common()
        shown = {label: int(count) for label, count in ordered[:TOP_COUNTS]}
        labels: dict[str, Any] = {"classes": len(self.labels), "counts": shown, "imbalance_ratio": None}
        if len(ordered) >= 2:
            ratio = ordered[0][1] / ordered[-1][1]
            labels["imbalance_ratio"] = round(ratio, 2)
            if ratio >= IMBALANCE_RATIO:
                profile["warnings"].append(
                    f"Labels are imbalanced: `{ordered[0][0]}` has {ratio:.0f}x the rows of `{ordered[-1][0]}`."
                )
        profile["labels"] = labels

    def file_errors(self) -> list[RowError]:
        if len(self.labels) >= 2:
            return []
        only = next(iter(self.labels), "")
        return [RowError(None, "label", f"classification needs at least two classes in `label`; every row has `{only[:60]}`")]


class ClassificationKind(TextKind):
    task = "classification"
    schemas = {"classification": pa.schema([("text", pa.string()), ("label", pa.string())])}
    required_text = {"classification": ("text", "label")}
    over_limit_effect = "would be truncated: the model only sees their beginning"
    profile_template = "datasets/kinds/classification.html"

    def profile_extras(self, shape: str) -> ProfileExtras:
        return LabelCounts()

    def label_names(self, profile: dict[str, Any]) -> tuple[set[str], int]:
        labels = profile.get("labels") or {}
        return set(labels.get("counts") or {}), int(labels.get("classes") or 0)

    def charted_counts(self, profile: dict[str, Any]) -> dict[str, dict[str, int] | None]:
        return {"label_bars": (profile.get("labels") or {}).get("counts")}


KIND = ClassificationKind()
