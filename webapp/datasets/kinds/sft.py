"""Instruction and chat data for supervised fine-tuning: `messages` conversations (the OpenAI format, or
LLaMA-Factory's ShareGPT turns), or `instruction` / `input` / `output` rows, which become a user turn and the
assistant's answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets.kinds.base import DatasetKind
from webapp.datasets.kinds.checks import ErrorLog, bad, check_text, check_too_big, list_layout, row_bytes
from webapp.datasets.kinds.columns import MESSAGE_TYPE, as_text, describe, is_scalar_text, rebuild_list
from webapp.datasets.shapes import ShapeMismatch
from webapp.lib.errors import RowError

if TYPE_CHECKING:
    from webapp.datasets.shapes import Shape

CHAT_ROLES = ("system", "user", "assistant", "tool")
# ShareGPT (LLaMA-Factory) turns are {from, value}; its role names, as the OpenAI format names them.
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}
# Tool calling cannot be trained yet: these turns are refused, never dropped or renamed.
TOOL_ROLES = ("function_call", "observation", "tool_call", "function")


def instruction_to_messages(instruction: str, input_text: str, output: str) -> list[dict[str, str]]:
    """The chat an instruction row becomes: the user asks (instruction, then input), the assistant answers."""
    prompt = f"{instruction}\n\n{input_text}" if input_text else instruction
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]


def as_messages(array: pa.Array, source: str, first_row: int = 1, system: pa.Array | None = None) -> pa.Array:
    """Lists of {role, content} turns (ShareGPT's {from, value} renamed), with a `system` column as each
    conversation's first turn."""
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.list_(MESSAGE_TYPE))
    problem = f"Column `{source}` must hold lists of {{role, content}} objects (the OpenAI chat format)"
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        hint = " (CSV and TSV cannot hold lists: use JSONL, JSON or Parquet)" if pa.types.is_string(kind) else ""
        raise ShapeMismatch(f"{problem}, but it holds {describe(kind)}{hint}.")
    flat = pc.list_flatten(array)
    if pa.types.is_null(flat.type):
        flat = pa.nulls(len(flat), pa.struct([("role", pa.string()), ("content", pa.string())]))
    if not pa.types.is_struct(flat.type):
        raise ShapeMismatch(f"{problem}, but its items are {describe(flat.type)}.")
    names = {flat.type.field(i).name.lower(): flat.type.field(i).name for i in range(flat.type.num_fields)}
    sharegpt = "role" not in names and "from" in names
    parts = []
    for key, sharegpt_key in (("role", "from"), ("content", "value")):
        name = names.get(key) or (names.get(sharegpt_key) if sharegpt else None)
        if name is not None:
            part = pc.struct_field(flat, name)
            if not is_scalar_text(part.type):
                raise ShapeMismatch(f"{problem}: `{name}` must be text, but it is {describe(part.type)}.")
            parts.append(part.cast(pa.string()))
        else:
            parts.append(pa.nulls(len(flat), pa.string()))
    if sharegpt:
        parts[0] = _sharegpt_roles(parts[0], pc.list_parent_indices(array), first_row)
    values = pa.StructArray.from_arrays(parts, fields=list(MESSAGE_TYPE))
    turns = rebuild_list(array, values, pa.list_(MESSAGE_TYPE))
    return _with_system_turns(turns, system) if system is not None else turns


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


def _with_system_turns(turns: pa.Array, system: pa.Array) -> pa.Array:
    """A `system` column becomes each conversation's first turn, unless the conversation starts with one
    (as LLaMA-Factory reads it)."""
    rows = turns.to_pylist()
    for conversation, prompt in zip(rows, system.cast(pa.string()).to_pylist(), strict=True):
        if conversation is not None and prompt and not (conversation and conversation[0]["role"] == "system"):
            conversation.insert(0, {"role": "system", "content": prompt})
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


def check_messages(array: pa.Array, first_row: int, log: ErrorLog) -> None:
    """Conversations that cannot train: no turns, a turn without role or content, an unknown role, no
    assistant answer at the end, or an answer with nothing before it."""
    rows = len(array)
    log.add_rows(bad(pc.is_null(array)) + first_row, "messages", "`messages` is missing")
    lengths, offsets, parents = list_layout(array)
    null_rows = pc.is_null(array).to_numpy(zero_copy_only=False)
    empty = np.flatnonzero((lengths == 0) & ~null_rows)
    log.add_rows(empty + first_row, "messages", "`messages` is an empty list")
    flat = pc.list_flatten(array)
    roles = pc.struct_field(flat, "role")
    contents = pc.struct_field(flat, "content")
    position = np.arange(len(parents)) - offsets[parents] + 1 if len(parents) else np.zeros(0, dtype=np.int64)

    no_role = bad(pc.or_kleene(pc.is_null(roles), pc.equal(pc.utf8_trim_whitespace(roles), "")))
    log.add_rows(parents[no_role] + first_row, "messages", [f"message {position[i]} has no role" for i in no_role])
    unknown = bad(pc.and_kleene(pc.invert(pc.is_in(roles, pa.array(CHAT_ROLES))), pc.greater(pc.binary_length(roles), 0)))
    role_values = roles.to_numpy(zero_copy_only=False) if len(unknown) else np.zeros(0)
    log.add_rows(
        parents[unknown] + first_row,
        "messages",
        [f"message {position[i]} has role `{str(role_values[i])[:40]}`; roles are {', '.join(CHAT_ROLES)}" for i in unknown],
    )
    needs_content = pc.invert(pc.fill_null(pc.equal(roles, "system"), False))
    no_content = bad(pc.and_kleene(needs_content, pc.or_kleene(pc.is_null(contents), pc.equal(pc.binary_length(contents), 0))))
    log.add_rows(parents[no_content] + first_row, "messages", [f"message {position[i]} has no content" for i in no_content])

    is_assistant = pc.fill_null(pc.equal(roles, "assistant"), False).to_numpy(zero_copy_only=False)
    has_assistant = np.bincount(parents[is_assistant], minlength=rows) > 0
    filled = lengths > 0
    no_assistant = np.flatnonzero(filled & ~has_assistant)
    log.add_rows(no_assistant + first_row, "messages", "`messages` has no assistant turn")
    last_is_assistant = np.zeros(rows, dtype=bool)
    last_is_assistant[filled] = is_assistant[offsets[1:][filled] - 1]
    not_last = np.flatnonzero(filled & has_assistant & ~last_is_assistant)
    log.add_rows(not_last + first_row, "messages", "`messages` must end with an assistant turn")
    # Training learns the last answer from the turns before it: an answer alone teaches nothing.
    alone = np.flatnonzero((lengths == 1) & last_is_assistant)
    log.add_rows(alone + first_row, "messages", "`messages` needs a turn before the assistant's answer")
    check_too_big(row_bytes(contents, parents, rows), "messages", first_row, log)


class SftKind(DatasetKind):
    task = "sft"
    schemas = {
        "chat": pa.schema([("messages", pa.list_(MESSAGE_TYPE))]),
        "instruction": pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]),
    }
    # LLaMA-Factory's ShareGPT format keeps the turns under `conversations`.
    column_aliases = {"messages": ("conversations",)}
    required_text = {"instruction": ("instruction", "output")}
    rendered_columns = frozenset({"messages", "instruction", "input", "output"})
    # TRL's SFTTrainer packs causal-LM rows by default: "wrapped" on CPU, "bfd"/"bfd_split" on GPU.
    over_limit_effect = (
        "are cut at that length in training: the rest is dropped, or, packed on a CPU worker, goes on in "
        "the next sequence without its beginning"
    )

    def canonicalize(self, batch: pa.RecordBatch, shape: Shape, first_row: int = 1) -> pa.RecordBatch:
        if shape.name == "chat":
            _refuse_tool_definitions(batch, first_row)
        return super().canonicalize(batch, shape, first_row)

    def convert(
        self, field: pa.Field, array: pa.Array, source: str, batch: pa.RecordBatch, shape: Shape, first_row: int
    ) -> pa.Array:
        if field.name == "messages":
            system_source = shape.column_of.get("system")
            system = None
            if system_source is not None and batch.schema.get_field_index(system_source) >= 0:
                system = as_text(batch.column(system_source), "system", system_source)
            return as_messages(array, source, first_row, system)
        text = super().convert(field, array, source, batch, shape, first_row)
        return pc.fill_null(text, "") if field.name == "input" else text

    def absent(self, field: pa.Field, rows: int) -> pa.Array:
        # `input` is optional: an instruction without one asks the instruction alone.
        return pa.array([""] * rows, pa.string()) if field.name == "input" else super().absent(field, rows)

    def conversion_notes(self, shape: Shape) -> list[str]:
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

    def check_rows(self, batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
        if shape == "chat":
            check_messages(batch.column("messages"), first_row, log)
            return
        super().check_rows(batch, shape, first_row, log)
        check_text(batch.column("input"), "input", first_row, log, required=False)

    def row_messages(self, shape: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
        if shape == "chat":
            return [{"role": m["role"] or "", "content": m["content"] or ""} for m in row["messages"] or []]
        return instruction_to_messages(row["instruction"] or "", row["input"] or "", row["output"] or "")


KIND = SftKind()
