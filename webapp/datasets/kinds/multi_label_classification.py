"""Multi-label text classification: `text` and its `labels` per row, a list (JSON, Parquet) or text with the labels
separated by commas or semicolons (CSV: `"great phone","positive;electronics"`); at least two distinct labels."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets.kinds.base import TOP_COUNTS, ProfileExtras
from webapp.datasets.kinds.checks import ErrorLog, bad, check_too_big, list_layout, row_bytes
from webapp.datasets.kinds.classification import ClassificationKind
from webapp.datasets.kinds.columns import as_text, list_of_text, rebuild_list
from webapp.lib.errors import RowError

if TYPE_CHECKING:
    from webapp.datasets.shapes import Shape

LABEL_LIST = pa.list_(pa.string())
# What separates labels written as text (RE2 syntax); the spaces around each label are dropped.
LABEL_SEPARATORS = r"[,;]"
# A label in fewer rows than this gives a model too few examples to learn it: a warning names it.
RARE_LABEL_ROWS = 5
RARE_LABELS_NAMED = 10


def as_label_lists(array: pa.Array, name: str, source: str) -> pa.Array:
    """Lists of labels as text: a list column item by item, text split at commas and semicolons. A blank text is
    an empty list and a null stays null, for the row checks to name."""
    kind = array.type
    if pa.types.is_null(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return list_of_text(array, name, source)
    text = pc.utf8_trim_whitespace(as_text(array, name, source))
    pieces = pc.split_pattern_regex(text, LABEL_SEPARATORS)
    pieces = pc.if_else(pc.equal(text, ""), pa.scalar([], LABEL_LIST), pieces)
    return rebuild_list(pieces, pc.utf8_trim_whitespace(pc.list_flatten(pieces)), LABEL_LIST)


def check_labels(labels: pa.Array, first_row: int, log: ErrorLog) -> None:
    log.add_rows(bad(pc.is_null(labels)) + first_row, "labels", "`labels` is missing")
    lengths, _, parents = list_layout(labels)
    filled = ~pc.is_null(labels).to_numpy(zero_copy_only=False)
    log.add_rows(np.flatnonzero(filled & (lengths == 0)) + first_row, "labels", "`labels` holds no label")
    values = pc.list_flatten(labels)
    blank = bad(pc.or_kleene(pc.is_null(values), pc.or_kleene(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values))))
    log.add_rows(np.unique(parents[blank]) + first_row, "labels", "a label in `labels` is empty")
    check_too_big(row_bytes(values, parents, len(labels)), "labels", first_row, log)


class LabelSets(ProfileExtras):
    """Rows per label, labels per row, and whether every row has the same set; the profile's `labels`."""

    def __init__(self) -> None:
        self.labels: Counter[str] = Counter()
        self.rows = 0
        self.total = 0
        self.most = 0
        self.first_set: frozenset[str] | None = None
        self.one_set = True

    def add(self, batch: pa.RecordBatch) -> None:
        for row in batch.column("labels").to_pylist():
            # Rows without labels, and empty labels, are row errors, not labels of their own.
            names = frozenset(label for label in row or () if label and label.strip())
            if not names:
                continue
            self.labels.update(names)
            self.rows += 1
            self.total += len(names)
            self.most = max(self.most, len(names))
            if self.first_set is None:
                self.first_set = names
            self.one_set = self.one_set and names == self.first_set

    def result(self, profile: dict[str, Any], sample: list[dict[str, Any]]) -> None:
        ordered = self.labels.most_common()
        mean = round(self.total / self.rows, 4) if self.rows else None
        profile["labels"] = {
            "classes": len(self.labels),
            "counts": {label: int(count) for label, count in ordered[:TOP_COUNTS]},
            "per_row": {"mean": mean, "max": self.most},
        }
        rare = [(label, count) for label, count in reversed(ordered) if count < RARE_LABEL_ROWS]
        if rare:
            named = ", ".join(f"`{label[:60]}` ({count})" for label, count in rare[:RARE_LABELS_NAMED])
            more = f" and {len(rare) - RARE_LABELS_NAMED} more" if len(rare) > RARE_LABELS_NAMED else ""
            which = "1 label appears" if len(rare) == 1 else f"{len(rare)} labels appear"
            profile["warnings"].append(
                f"{which} in fewer than {RARE_LABEL_ROWS} rows, too few to learn from: {named}{more} "
                "(rows with each label in brackets)."
            )
        if self.one_set and self.rows > 1 and len(self.labels) >= 2:
            names = ", ".join(f"`{label[:60]}`" for label in sorted(self.labels)[:RARE_LABELS_NAMED])
            profile["warnings"].append(
                f"Every row has the same labels ({names}): with nothing to tell the rows apart, a model can only "
                "learn to answer them all."
            )

    def file_errors(self) -> list[RowError]:
        if len(self.labels) >= 2:
            return []
        only = next(iter(self.labels), "")
        return [
            RowError(
                None, "labels",
                f"multi-label classification needs at least two distinct labels in `labels`; every row has `{only[:60]}`",
            )
        ]


class MultiLabelClassificationKind(ClassificationKind):
    """Classification's profile reading (label names and bars from `labels`), with a list of labels per row."""

    task = "multi_label_classification"
    schemas = {"multi_label": pa.schema([("text", pa.string()), ("labels", LABEL_LIST)])}
    required_text = {"multi_label": ("text",)}
    profile_template = "datasets/kinds/multi_label_classification.html"

    def convert(
        self, field: pa.Field, array: pa.Array, source: str, batch: pa.RecordBatch, shape: Shape, first_row: int
    ) -> pa.Array:
        if field.name == "labels":
            return as_label_lists(array, field.name, source)
        return super().convert(field, array, source, batch, shape, first_row)

    def check_rows(self, batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
        super().check_rows(batch, shape, first_row, log)
        check_labels(batch.column("labels"), first_row, log)

    def profile_extras(self, shape: str) -> ProfileExtras:
        return LabelSets()



KIND = MultiLabelClassificationKind()
