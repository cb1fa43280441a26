"""Turns a file's batches into the normalized columns the training engine reads (no Django here).

The contract: Parquet files `train.parquet` and, if present, `validation.parquet`, with these columns
per shape (see CANONICAL_SCHEMAS). `instruction_to_messages` and `training_text` say how rows become
the text a model sees; the training engine and the profile share them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobs.training import registry
from webapp.datasets import preference
from webapp.datasets.shapes import Shape, ShapeMismatch
from webapp.lib.errors import RowError

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
CANONICAL_SCHEMAS: dict[str, pa.Schema] = {
    "instruction": pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]),
    "chat": pa.schema([("messages", pa.list_(MESSAGE_TYPE))]),
    "text": pa.schema([("text", pa.string())]),
    "classification": pa.schema([("text", pa.string()), ("label", pa.string())]),
    "regression": pa.schema([("text", pa.string()), ("score", pa.float64())]),
    "token_classification": pa.schema([("tokens", pa.list_(pa.string())), ("tags", pa.list_(pa.string()))]),
    "seq2seq": pa.schema([("source", pa.string()), ("target", pa.string())]),
    **preference.SCHEMAS,
}
# ShareGPT (LLaMA-Factory) turns are {from, value}; its role names, as the OpenAI format names them.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
# Tool calling cannot be trained yet: these turns are refused, never dropped or renamed.
TOOL_ROLES = ("function_call", "observation", "tool_call", "function")
# A number written as text, as Arrow's cast parses it (RE2 syntax): 3, -2.5, .5, 1e3, inf, NaN.
NUMBER_TEXT = r"(?i)^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf|infinity|nan)$"


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


def _as_number(array: pa.Array, name: str, source: str) -> pa.Array:
    """Numbers as float64, text parsed as one. What is no number (a word, true or false) becomes NaN and a blank or
    null stays null, for the row checks to name; lists and objects are refused for a number column."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind):
        return array.cast(pa.float64(), safe=False)  # a huge integer rounds to the nearest double
    if pa.types.is_boolean(kind):
        return pc.if_else(pc.is_null(array), pa.scalar(None, pa.float64()), math.nan)
    if not _is_scalar_text(kind):
        raise ShapeMismatch(f"Column `{source}` (used as `{name}`) must hold numbers, but it holds {_describe(kind)}.")
    text = pc.utf8_trim_whitespace(array.cast(pa.string()))
    parses = pc.match_substring_regex(text, NUMBER_TEXT)
    numbers = pc.if_else(parses, text, pa.scalar(None, pa.string())).cast(pa.float64())
    unreadable = pc.fill_null(pc.and_(pc.invert(parses), pc.not_equal(text, "")), False)
    return pc.if_else(unreadable, math.nan, numbers)


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


def _messages(array: pa.Array, source: str, first_row: int = 1, system: pa.Array | None = None) -> pa.Array:
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
    sharegpt = "role" not in names and "from" in names
    parts = []
    for key, sharegpt_key in (("role", "from"), ("content", "value")):
        name = names.get(key) or (names.get(sharegpt_key) if sharegpt else None)
        if name is not None:
            part = pc.struct_field(flat, name)
            if not _is_scalar_text(part.type):
                raise ShapeMismatch(f"{problem}: `{name}` must be text, but it is {_describe(part.type)}.")
            parts.append(part.cast(pa.string()))
        else:
            parts.append(pa.nulls(len(flat), pa.string()))
    if sharegpt:
        parts[0] = _sharegpt_roles(parts[0], pc.list_parent_indices(array), first_row)
    values = pa.StructArray.from_arrays(parts, fields=list(MESSAGE_TYPE))
    messages = _rebuild_list(array, values, pa.list_(MESSAGE_TYPE))
    return _with_system_turns(messages, system) if system is not None else messages


def _sharegpt_roles(roles: pa.Array, parents: pa.Array, first_row: int) -> pa.Array:
    """human -> user, gpt -> assistant; tool turns refused with the first row that has one."""
    tools = pc.fill_null(pc.is_in(pc.utf8_lower(roles), pa.array(TOOL_ROLES)), False)
    if pc.any(tools).as_py():
        at = pc.index(tools, True).as_py()
        row = first_row + parents[at].as_py()
        raise ShapeMismatch(
            f"Row {row} has a `{roles[at].as_py()}` turn (tool calling), which cannot be trained yet: remove the "
            "tool turns (function_call, observation) or those rows, and upload the conversations again.",
            [RowError(row, "messages", f"`{roles[at].as_py()}` turns cannot be trained yet")],
        )
    encoded = roles.dictionary_encode()
    names = [SHAREGPT_ROLES.get(str(name).lower(), name) for name in encoded.dictionary.to_pylist()]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(names, pa.string())).cast(pa.string())


def _with_system_turns(messages: pa.Array, system: pa.Array) -> pa.Array:
    """A `system` column becomes each conversation's first turn, unless the conversation starts with one
    (as LLaMA-Factory reads it)."""
    rows = messages.to_pylist()
    for turns, prompt in zip(rows, system.cast(pa.string()).to_pylist(), strict=True):
        if turns is not None and prompt and not (turns and turns[0]["role"] == "system"):
            turns.insert(0, {"role": "system", "content": prompt})
    return pa.array(rows, pa.list_(MESSAGE_TYPE))


def _refuse_tool_definitions(batch: pa.RecordBatch, first_row: int) -> None:
    """A `tools` column (LLaMA-Factory's tool schemas) would be silently lost: refuse rows that use it."""
    names = {name.lower(): name for name in batch.schema.names}
    if "tools" not in names:
        return
    tools = batch.column(names["tools"])
    used = pc.invert(pc.is_null(tools))
    if pa.types.is_string(tools.type) or pa.types.is_large_string(tools.type):
        used = pc.and_(used, pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(tools)), 0))
        used = pc.and_(used, pc.invert(pc.is_in(pc.utf8_trim_whitespace(tools), pa.array(["[]", "{}", "null"]))))
    if pc.any(pc.fill_null(used, False)).as_py():
        row = first_row + pc.index(pc.fill_null(used, False), True).as_py()
        raise ShapeMismatch(
            f"Row {row} defines tools in `{names['tools']}`: tool calling cannot be trained yet. Remove the column "
            "(or the rows that use it) to train on the conversations alone.",
            [RowError(row, names["tools"], "tool definitions cannot be trained yet")],
        )


def canonicalize(batch: pa.RecordBatch, shape: Shape, first_row: int = 1) -> pa.RecordBatch:
    """The batch in its shape's canonical columns; nulls stay null so the row checks can name them."""
    schema = CANONICAL_SCHEMAS[shape.name]
    if shape.name in preference.SHAPES:
        converted, unreadable = preference.canonicalize(batch, shape, first_row)
        if unreadable:
            first = unreadable[0]
            raise ShapeMismatch(
                f"Row {first.row}: `{shape.column_of.get(first.field or '', first.field)}` cannot be read as a "
                f"preference {first.field}: {first.message}.",
                unreadable,
            )
        return converted
    if shape.name == "chat":
        _refuse_tool_definitions(batch, first_row)
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
            system_source = shape.column_of.get("system")
            system = None
            if system_source is not None and batch.schema.get_field_index(system_source) >= 0:
                system = _as_text(batch.column(system_source), "system", system_source)
            columns.append(_messages(array, source, first_row, system))
        elif pa.types.is_list(field.type):
            columns.append(_list_of_text(array, field.name, source))
        elif pa.types.is_floating(field.type):
            columns.append(_as_number(array, field.name, source))
        else:
            text = _as_text(array, field.name, source)
            if field.name == "input":
                text = pc.fill_null(text, "")
            columns.append(text)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def conversion_notes(shape: Shape) -> list[str]:
    """What canonicalize changes in form (never in content), said on the profile."""
    notes = []
    source = shape.column_of.get("messages", "")
    if source and source.strip().lower() != "messages":
        notes.append(
            f"Chat turns read from `{source}` (the ShareGPT layout): `from`/`value` turns become role/content, "
            "with human → user and gpt → assistant."
        )
    if "system" in shape.column_of:
        notes.append(f"`{shape.column_of['system']}` becomes each conversation's first (system) turn, unless it starts with one.")
    return notes


def instruction_to_messages(instruction: str, input_text: str, output: str) -> list[dict[str, str]]:
    """The chat an instruction row becomes: the user asks (instruction, then input), the assistant answers."""
    prompt = f"{instruction}\n\n{input_text}" if input_text else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def row_messages(shape: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
    if shape in preference.SHAPES:
        answer = row.get("chosen") if shape == "preference" else row.get("completion")
        prompt = [{"role": m["role"] or "", "content": m["content"] or ""} for m in row.get("prompt") or []]
        return [*prompt, {"role": "assistant", "content": answer or ""}]
    if shape == "chat":
        return [{"role": m["role"] or "", "content": m["content"] or ""} for m in row["messages"] or []]
    if shape == "instruction":
        return instruction_to_messages(row["instruction"] or "", row["input"] or "", row["output"] or "")
    return None


def training_text(shape: str, row: dict[str, Any]) -> str:
    """Plain text of a row, for models without a chat template and for non-chat shapes."""
    if shape in ("chat", "instruction", *preference.SHAPES):
        messages = row_messages(shape, row) or []
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    if "text" in registry.SHAPE_TABLE[shape].required:
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
