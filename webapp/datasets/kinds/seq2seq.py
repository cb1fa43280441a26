"""Sequence to sequence: a `source` the encoder reads and the `target` the decoder learns to write."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from webapp.datasets.kinds.base import DatasetKind


class Seq2SeqKind(DatasetKind):
    task = "seq2seq"
    schemas = {"seq2seq": pa.schema([("source", pa.string()), ("target", pa.string())])}
    required_text = {"seq2seq": ("source", "target")}
    rendered_columns = frozenset({"source"})
    over_limit_effect = "would be truncated (sources and targets alike)"

    def training_text(self, shape: str, row: dict[str, Any]) -> str:
        return row["source"] or ""

    def tokenized_text(self, shape: str, row: dict[str, Any], rendered: str) -> str:
        # The token lengths are the source's, the model's input (targets are tokenized apart, as labels).
        return row["source"] or ""


KIND = Seq2SeqKind()
