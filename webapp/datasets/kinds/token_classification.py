"""Token classification (tagging): `tokens` and `tags`, two lists of equal length per row."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets.kinds.base import TOP_COUNTS, DatasetKind, ProfileExtras
from webapp.datasets.kinds.checks import ErrorLog, bad, check_too_big, list_layout, row_bytes
from webapp.datasets.kinds.columns import list_of_text

if TYPE_CHECKING:
    from webapp.datasets.shapes import Shape


class TagCounts(ProfileExtras):
    """Words per tag; the profile's `tags`."""

    def __init__(self) -> None:
        self.tags: Counter[str] = Counter()

    def add(self, batch: pa.RecordBatch) -> None:
        for item in pc.value_counts(pc.list_flatten(batch.column("tags"))).to_pylist():
            self.tags[str(item["values"])] += int(item["counts"])

    def result(self, profile: dict[str, Any], sample: list[dict[str, Any]]) -> None:
        profile["tags"] = {tag: int(count) for tag, count in self.tags.most_common(TOP_COUNTS)}


def check_tokens(batch: pa.RecordBatch, first_row: int, log: ErrorLog) -> None:
    tokens, tags = batch.column("tokens"), batch.column("tags")
    for array, name in ((tokens, "tokens"), (tags, "tags")):
        log.add_rows(bad(pc.is_null(array)) + first_row, name, f"`{name}` is missing")
    token_lengths, _, token_parents = list_layout(tokens)
    tag_lengths, _, tag_parents = list_layout(tags)
    both = ~(pc.is_null(tokens).to_numpy(zero_copy_only=False) | pc.is_null(tags).to_numpy(zero_copy_only=False))
    empty = np.flatnonzero(both & (token_lengths == 0))
    log.add_rows(empty + first_row, "tokens", "`tokens` is an empty list")
    unequal = np.flatnonzero(both & (token_lengths != tag_lengths))
    log.add_rows(
        unequal + first_row,
        "tags",
        [f"{token_lengths[i]} tokens but {tag_lengths[i]} tags: they must have equal lengths" for i in unequal],
    )
    flat_tags = pc.list_flatten(tags)
    empty_tag = bad(pc.or_kleene(pc.is_null(flat_tags), pc.equal(pc.binary_length(flat_tags), 0)))
    rows_with_empty_tag = np.unique(tag_parents[empty_tag])
    log.add_rows(rows_with_empty_tag + first_row, "tags", "a tag is empty")
    rows = batch.num_rows
    check_too_big(row_bytes(pc.list_flatten(tokens), token_parents, rows), "tokens", first_row, log)
    check_too_big(row_bytes(flat_tags, tag_parents, rows), "tags", first_row, log)


class TokenClassificationKind(DatasetKind):
    task = "token_classification"
    schemas = {
        "token_classification": pa.schema([("tokens", pa.list_(pa.string())), ("tags", pa.list_(pa.string()))]),
    }
    rendered_columns = frozenset({"tokens"})
    over_limit_effect = "would be truncated: words past that length are neither learned nor tagged"
    profile_template = "datasets/kinds/token_classification.html"

    def convert(
        self, field: pa.Field, array: pa.Array, source: str, batch: pa.RecordBatch, shape: Shape, first_row: int
    ) -> pa.Array:
        return list_of_text(array, field.name, source)

    def check_rows(self, batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
        check_tokens(batch, first_row, log)

    def training_text(self, shape: str, row: dict[str, Any]) -> str:
        return " ".join(row["tokens"] or [])

    def label_names(self, profile: dict[str, Any]) -> tuple[set[str], int]:
        tags = profile.get("tags") or {}
        return set(tags), len(tags)

    def profile_extras(self, shape: str) -> ProfileExtras:
        return TagCounts()

    def charted_counts(self, profile: dict[str, Any]) -> dict[str, dict[str, int] | None]:
        return {"tag_bars": profile.get("tags")}


KIND = TokenClassificationKind()
