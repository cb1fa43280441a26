"""Raw text for continued pre-training: one `text` column. The text tasks that add a column to it (a label, a
score) extend this kind."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from webapp.datasets.kinds.base import DatasetKind


class TextKind(DatasetKind):
    task = "text"
    schemas = {"text": pa.schema([("text", pa.string())])}
    required_text = {"text": ("text",)}
    rendered_columns = frozenset({"text"})
    # TRL's SFTTrainer packs causal-LM rows by default ("wrapped" on CPU, "bfd"/"bfd_split" on GPU).
    over_limit_effect = (
        "are split into chunks of that length in training, so no text is lost (with packing off, or with "
        "prompt tuning, they are truncated instead)"
    )

    def training_text(self, shape: str, row: dict[str, Any]) -> str:
        return row["text"] or ""


KIND = TextKind()
