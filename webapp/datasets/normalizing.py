"""Turns a file's batches into the normalized columns the training engine reads (no Django here).

The contract: Parquet files `train.parquet` and, if present, `validation.parquet`, with these columns
per shape (see CANONICAL_SCHEMAS). `instruction_to_messages` and `training_text` say how rows become
the text a model sees; the training engine and the profile share them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webapp.datasets.shapes import Shape, ShapeMismatch

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
CANONICAL_SCHEMAS: dict[str, pa.Schema] = {
    "instruction": pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]),
    "chat": pa.schema([("messages", pa.list_(MESSAGE_TYPE))]),
    "text": pa.schema([("text", pa.string())]),
    "classification": pa.schema([("text", pa.string()), ("label", pa.string())]),
    "token_classification": pa.schema([("tokens", pa.list_(pa.string())), ("tags", pa.list_(pa.string()))]),
    "seq2seq": pa.schema([("source", pa.string()), ("target", pa.string())]),
}
SPLITS = ("train", "validation")


def _is_scalar_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
        or pa.types.is_dictionary(kind)
    )


def _describe(kind: pa.DataType) -> str:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "a list"
    if pa.types.is_struct(kind):
        return "an object"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary data"
    return str(kind)


def _as_text(array: pa.Array, name: str, source: str) -> pa.Array:
    """Numbers and booleans become their text; lists and objects are refused for a text column."""
    if not _is_scalar_text(array.type):
        raise ShapeMismatch(f"Column `{source}` (used as `{name}`) must hold text, but it holds {_describe(array.type)}.")
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array.cast(pa.string())


def _list_of_text(array: pa.Array, name: str, source: str) -> pa.Array:
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.list_(pa.string()))
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        hint = " (CSV and TSV cannot hold lists: use JSONL or Parquet)" if pa.types.is_string(kind) else ""
        raise ShapeMismatch(f"Column `{source}` (used as `{name}`) must hold lists, but it holds {_describe(kind)}{hint}.")
    values = _as_text(pc.list_flatten(array), f"{name}[]", f"{source}[]")
    return _rebuild_list(array, values, pa.list_(pa.string()))


def _rebuild_list(array: pa.Array, values: pa.Array, kind: pa.DataType) -> pa.Array:
    """A list array over new values with the old row boundaries (and nulls), whatever its slicing."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = pc.is_null(array) if array.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=kind, mask=mask)


def _messages(array: pa.Array, source: str) -> pa.Array:
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.list_(MESSAGE_TYPE))
    problem = f"Column `{source}` must hold lists of {{role, content}} objects (the OpenAI chat format)"
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        hint = " (CSV and TSV cannot hold lists: use JSONL, JSON or Parquet)" if pa.types.is_string(kind) else ""
        raise ShapeMismatch(f"{problem}, but it holds {_describe(kind)}{hint}.")
    flat = pc.list_flatten(array)
    if pa.types.is_null(flat.type):
        flat = pa.nulls(len(flat), pa.struct([("role", pa.string()), ("content", pa.string())]))
    if not pa.types.is_struct(flat.type):
        raise ShapeMismatch(f"{problem}, but its items are {_describe(flat.type)}.")
    names = {flat.type.field(i).name.lower(): flat.type.field(i).name for i in range(flat.type.num_fields)}
    parts = []
    for key in ("role", "content"):
        if key in names:
            part = pc.struct_field(flat, names[key])
            if not _is_scalar_text(part.type):
                raise ShapeMismatch(f"{problem}: `{key}` must be text, but it is {_describe(part.type)}.")
            parts.append(part.cast(pa.string()))
        else:
            parts.append(pa.nulls(len(flat), pa.string()))
    values = pa.StructArray.from_arrays(parts, fields=list(MESSAGE_TYPE))
    return _rebuild_list(array, values, pa.list_(MESSAGE_TYPE))


def canonicalize(batch: pa.RecordBatch, shape: Shape) -> pa.RecordBatch:
    """The batch in its shape's canonical columns; nulls stay null so validation can name them."""
    schema = CANONICAL_SCHEMAS[shape.name]
    columns = []
    for field in schema:
        source = shape.column_of.get(field.name)
        if source is None:  # only `input` may be absent
            columns.append(pa.array([""] * batch.num_rows, pa.string()))
            continue
        if batch.schema.get_field_index(source) < 0:
            # Parsed in pieces, a file may lack a column in some of them: every such row misses it.
            columns.append(pa.nulls(batch.num_rows, field.type) if field.name != "input" else pa.array([""] * batch.num_rows))
            continue
        array = batch.column(source)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if field.name == "messages":
            columns.append(_messages(array, source))
        elif pa.types.is_list(field.type):
            columns.append(_list_of_text(array, field.name, source))
        else:
            text = _as_text(array, field.name, source)
            if field.name == "input":
                text = pc.fill_null(text, "")
            columns.append(text)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def instruction_to_messages(instruction: str, input_text: str, output: str) -> list[dict[str, str]]:
    """The chat an instruction row becomes: the user asks (instruction, then input), the assistant answers."""
    prompt = f"{instruction}\n\n{input_text}" if input_text else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def row_messages(shape: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
    if shape == "chat":
        return [{"role": m["role"] or "", "content": m["content"] or ""} for m in row["messages"] or []]
    if shape == "instruction":
        return instruction_to_messages(row["instruction"] or "", row["input"] or "", row["output"] or "")
    return None


def training_text(shape: str, row: dict[str, Any]) -> str:
    """Plain text of a row, for models without a chat template and for non-chat shapes."""
    if shape in ("chat", "instruction"):
        messages = row_messages(shape, row) or []
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    if shape in ("text", "classification"):
        return row["text"] or ""
    if shape == "token_classification":
        return " ".join(row["tokens"] or [])
    return row["source"] or ""


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
