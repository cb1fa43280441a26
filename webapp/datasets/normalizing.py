"""Turns a file's batches into the normalized columns the training engine reads (no Django here).

The contract: Parquet files `train.parquet` and, if present, `validation.parquet`, with these columns
per shape (see CANONICAL_SCHEMAS). `row_messages` and `training_text` say how rows become the text a model
sees; the training engine and the profile share them. What each task does lies in its kind (`kinds/<task>.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.training import registry
from webapp.datasets import kinds
from webapp.datasets.shapes import Shape

CANONICAL_SCHEMAS: dict[str, pa.Schema] = {shape: kinds.of_shape(shape).schemas[shape] for shape in registry.SHAPES}


def canonicalize(batch: pa.RecordBatch, shape: Shape, first_row: int = 1) -> pa.RecordBatch:
    """The batch in its shape's canonical columns; nulls stay null so the row checks can name them."""
    return kinds.of_shape(shape.name).canonicalize(batch, shape, first_row)


def conversion_notes(shape: Shape) -> list[str]:
    """What canonicalize changes in form (never in content), said on the profile."""
    return kinds.of_shape(shape.name).conversion_notes(shape)


def row_messages(shape: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
    """The conversation a row becomes, for a chat template; None for the tasks that train on plain text."""
    return kinds.of_shape(shape).row_messages(shape, row)


def training_text(shape: str, row: dict[str, Any]) -> str:
    """Plain text of a row, for models without a chat template and for non-chat shapes."""
    return kinds.of_shape(shape).training_text(shape, row)


class NormalizedWriter:
    """Streams canonical batches into train.parquet / validation.parquet under a folder."""

    def __init__(self, folder: Path, shape: str) -> None:
        self.folder = folder
        self.schema = CANONICAL_SCHEMAS[shape]
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}

    def write(self, split: str, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        writer = self._writers.get(split)
        if writer is None:
            # Dictionary encoding rarely pays on free text and costs time on every batch.
            writer = pq.ParquetWriter(
                self.folder / f"{split}.parquet", self.schema, compression="snappy", use_dictionary=["label", "tags"]
            )
            self._writers[split] = writer
        writer.write_batch(batch)
        self.rows[split] = self.rows.get(split, 0) + batch.num_rows

    def close(self) -> dict[str, Path]:
        for writer in self._writers.values():
            writer.close()
        return {split: self.folder / f"{split}.parquet" for split in self._writers}
