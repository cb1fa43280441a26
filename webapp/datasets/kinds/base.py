"""DatasetKind: what one training task's data is, with the defaults that most tasks keep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from webapp.datasets.kinds.checks import ErrorLog, check_text
from webapp.datasets.kinds.columns import as_text
from webapp.lib.errors import RowError

if TYPE_CHECKING:
    from webapp.datasets.shapes import Shape

# Label and tag counts a profile keeps: the most common ones.
TOP_COUNTS = 50


class ProfileExtras:
    """What a task adds to the quality profile, gathered batch by batch; one per check. This one adds nothing."""

    def add(self, batch: pa.RecordBatch) -> None:
        """A canonical batch, whichever split its rows go to."""

    def result(self, profile: dict[str, Any], sample: list[dict[str, Any]]) -> None:
        """Add the task's keys (API.md's profile) and warnings to `profile`; `sample` is the profile's uniform
        sample of rows (the one token lengths are measured on)."""

    def file_errors(self) -> list[RowError]:
        """Problems of the file as a whole, told when its rows have none (classification: a single class)."""
        return []


class DatasetKind:
    """The data of one task of `jobs.training.registry` (one instance, `KIND`, in `kinds/<task>.py`).

    It says, for each of the task's shapes: the canonical columns (the normalized Parquet files the engine
    reads), how a file's batch becomes them, which rows cannot train, what text training makes of a row, what
    the task adds to the profile and how the dataset page shows it. The shared modules (normalizing,
    row_checks, profiling, presenting, checking, shapes) ask the kind and never test a task's name.
    """

    task: str = ""
    # Shape name -> its canonical Arrow schema: the contract with the training engine.
    schemas: Mapping[str, pa.Schema] = {}
    # Shape name -> the text columns every row must fill, in the order their problems are listed.
    required_text: Mapping[str, tuple[str, ...]] = {}
    # Other tools' names for an expected column, tried when the file has no column of that name.
    column_aliases: Mapping[str, tuple[str, ...]] = {}
    # Canonical columns the rendered training text already shows: the preview lists the other ones beside it.
    rendered_columns: frozenset[str] = frozenset()
    # What training does with a row over the maximum length: ends "N% of rows are longer than M tokens and ...".
    over_limit_effect: str = "would be truncated"
    # The dataset page's block for what the task adds to the profile (labels, scores...); None: no block.
    profile_template: str | None = None

    # Normalization: a file's batch in canonical columns.

    def canonicalize(self, batch: pa.RecordBatch, shape: Shape, first_row: int = 1) -> pa.RecordBatch:
        """The batch in the shape's canonical columns; nulls stay null so the row checks can name them.
        ShapeMismatch when a column cannot play its part (a list where text is needed)."""
        schema = self.schemas[shape.name]
        columns = []
        for field in schema:
            source = shape.column_of.get(field.name)
            # An optional column the file lacks; or, parsed in pieces, a column some pieces lack.
            if source is None or batch.schema.get_field_index(source) < 0:
                columns.append(self.absent(field, batch.num_rows))
                continue
            array = batch.column(source)
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            columns.append(self.convert(field, array, source, batch, shape, first_row))
        return pa.RecordBatch.from_arrays(columns, schema=schema)

    def convert(
        self, field: pa.Field, array: pa.Array, source: str, batch: pa.RecordBatch, shape: Shape, first_row: int
    ) -> pa.Array:
        """The file's column `source` as the canonical `field`: text by default."""
        return as_text(array, field.name, source)

    def absent(self, field: pa.Field, rows: int) -> pa.Array:
        """The canonical `field` where the file has no column for it: missing in every row."""
        return pa.nulls(rows, field.type)

    def conversion_notes(self, shape: Shape) -> list[str]:
        """What canonicalize changes in form (never in content), said on the profile."""
        return []

    # Row checks.

    def check_rows(self, batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
        """Record the problems of a canonical batch whose first row is the file's row `first_row` (1-based)."""
        for field in self.required_text.get(shape, ()):
            check_text(batch.column(field), field, first_row, log)

    # What training sees of a row.

    def row_messages(self, shape: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
        """The conversation a row becomes, for a chat template; None: the task trains on plain text."""
        return None

    def training_text(self, shape: str, row: dict[str, Any]) -> str:
        """Plain text of a row, for models without a chat template: its conversation as `role: content` turns."""
        messages = self.row_messages(shape, row) or []
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def tokenized_text(self, shape: str, row: dict[str, Any], rendered: str) -> str:
        """What the token-length profile measures of a row, given the text training renders from it."""
        return rendered

    # The profile, and the page that shows it.

    def profile_extras(self, shape: str) -> ProfileExtras:
        return ProfileExtras()

    def label_names(self, profile: dict[str, Any]) -> tuple[set[str], int]:
        """The labels a classifier head over this data needs, from its profile: the names the profile lists (its
        commonest) and how many distinct ones it counted. None by default: the task has no label vocabulary."""
        return set(), 0

    def charted_counts(self, profile: dict[str, Any]) -> dict[str, dict[str, int] | None]:
        """Counts the profile block draws as bars, by the template variable that holds the bars."""
        return {}
