"""Preference data: the layouts other tools write, made into one canonical form, with row checks.

Canonical columns:
- preference: `prompt` (the conversation before the answer: a list of {role, content}), `chosen`, `rejected` (text).
- preference_unpaired (KTO): `prompt`, `completion` (text), `label` (true: a desirable answer).

Read as they come, detected without a config file:
- prompt / chosen / rejected as strings, or as message lists (TRL's conversational format);
- LLaMA-Factory: `conversations` (ShareGPT turns) + `chosen` + `rejected` ({from, value} objects);
- OpenAI: `input` ({messages: [...]}) + `preferred_output` + `non_preferred_output` (lists of messages);
- KTO: prompt, completion, label (true/false, yes/no, 1/0).

Preference files are row-wise JSON structures of modest size: each batch is converted row by row in Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from webapp.datasets.kinds.base import DatasetKind, ProfileExtras
from webapp.datasets.kinds.checks import ErrorLog
from webapp.datasets.kinds.columns import MESSAGE_TYPE
from webapp.datasets.kinds.sft import SHAREGPT_ROLES
from webapp.datasets.shapes import ShapeMismatch
from webapp.lib.errors import RowError

if TYPE_CHECKING:
    from webapp.datasets.shapes import Shape

_TRUE = {"true", "yes", "1", "desirable", "good", "chosen"}
_FALSE = {"false", "no", "0", "undesirable", "bad", "rejected"}


class _Unreadable(ValueError):
    """One value that cannot be read as the column needs; the row is reported, never dropped."""


def _message(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise _Unreadable("turns must be {role, content} objects")
    if "role" in item or "content" in item:
        role, content = item.get("role"), item.get("content")
    else:
        role, content = SHAREGPT_ROLES.get(str(item.get("from", "")).lower(), item.get("from")), item.get("value")
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    if role is None or content is None:
        raise _Unreadable("a turn has no role or no content")
    return {"role": str(role), "content": str(content)}


def _prompt(value: Any) -> list[dict[str, str]] | None:
    """The conversation before the answer, from text, a message list, or OpenAI's {messages: [...]}."""
    if value is None:
        return None
    if isinstance(value, dict) and "messages" in value:
        value = value["messages"]
    if isinstance(value, str):
        return [{"role": "user", "content": value}] if value.strip() else None
    if isinstance(value, list):
        return [_message(item) for item in value] or None
    return [{"role": "user", "content": str(value)}]


def _answer(value: Any) -> str | None:
    """One answer, from text, a {from, value} / {role, content} object, or a message list (its last turn)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _message(value)["content"]
    if isinstance(value, list):
        turns = [_message(item) for item in value]
        if not turns:
            return None
        if turns[-1]["role"] != "assistant":
            raise _Unreadable("the answer's last turn is not the assistant's")
        return turns[-1]["content"]
    return str(value)


def _label(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Unreadable(f"label must be true or false, not {str(value)[:40]!r}")


_READERS = {"prompt": _prompt, "chosen": _answer, "rejected": _answer, "completion": _answer, "label": _label}


def row_problems(batch: pa.RecordBatch, shape: str, first_row: int) -> list[RowError]:
    """Rows that cannot train: a missing prompt, an empty side, chosen equal to rejected, a missing label."""
    problems: list[RowError] = []
    rows = batch.to_pylist()
    for offset, row in enumerate(rows):
        number = first_row + offset
        if not row["prompt"] or not any((turn["content"] or "").strip() for turn in row["prompt"]):
            problems.append(RowError(number, "prompt", "the prompt is missing or empty"))
        if shape == "preference":
            chosen, rejected = row["chosen"], row["rejected"]
            for name, text in (("chosen", chosen), ("rejected", rejected)):
                if not (text or "").strip():
                    problems.append(RowError(number, name, f"the {name} answer is empty"))
            if (chosen or "").strip() and (chosen or "").strip() == (rejected or "").strip():
                problems.append(RowError(number, "rejected", "chosen and rejected are the same answer"))
        else:
            if not (row["completion"] or "").strip():
                problems.append(RowError(number, "completion", "the completion is empty"))
            if row["label"] is None:
                problems.append(RowError(number, "label", "the label is missing (true or false)"))
    return problems


def length_bias(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Chosen vs rejected answer lengths (characters): preference data whose chosen answers are mostly the longer
    ones teaches length as much as quality (a known DPO failure)."""
    pairs = [(len(row["chosen"] or ""), len(row["rejected"] or "")) for row in rows if "chosen" in row]
    if not pairs:
        return None
    longer = sum(1 for chosen, rejected in pairs if chosen > rejected)
    mean_chosen = sum(chosen for chosen, _ in pairs) / len(pairs)
    mean_rejected = sum(rejected for _, rejected in pairs) / len(pairs)
    share = longer / len(pairs)
    return {
        "pairs": len(pairs),
        "mean_chosen_chars": round(mean_chosen, 1),
        "mean_rejected_chars": round(mean_rejected, 1),
        "chosen_longer_share": round(share, 4),
        "warning": (
            f"The chosen answer is the longer one in {share:.0%} of pairs (mean {mean_chosen:.0f} vs "
            f"{mean_rejected:.0f} characters): the model may learn that longer is better."
            if len(pairs) >= 10 and share >= 0.75
            else ""
        ),
    }


class LengthBias(ProfileExtras):
    """The profile's `length_bias` of paired data, measured on the profile's sample of rows."""

    def result(self, profile: dict[str, Any], sample: list[dict[str, Any]]) -> None:
        profile["length_bias"] = length_bias([row for row in sample if row])
        if profile["length_bias"] and profile["length_bias"]["warning"]:
            profile["warnings"].append(profile["length_bias"]["warning"])


class PreferenceKind(DatasetKind):
    task = "preference"
    schemas = {
        "preference": pa.schema([("prompt", pa.list_(MESSAGE_TYPE)), ("chosen", pa.string()), ("rejected", pa.string())]),
        "preference_unpaired": pa.schema(
            [("prompt", pa.list_(MESSAGE_TYPE)), ("completion", pa.string()), ("label", pa.bool_())]
        ),
    }
    # LLaMA-Factory keeps the prompt under `conversations`, OpenAI under `input` ({messages}) with
    # `preferred_output` / `non_preferred_output`; alpaca-style pairs put it under `instruction` or `question`.
    column_aliases = {
        "prompt": ("conversations", "input", "instruction", "question"),
        "chosen": ("preferred_output",),
        "rejected": ("non_preferred_output",),
    }

    def canonicalize(self, batch: pa.RecordBatch, shape: Shape, first_row: int = 1) -> pa.RecordBatch:
        """Row by row through the readers; a value none can read refuses the file, naming its row."""
        schema = self.schemas[shape.name]
        columns: dict[str, list[Any]] = {}
        unreadable: list[RowError] = []
        for field in schema:
            source = shape.column_of.get(field.name)
            if source is None or batch.schema.get_field_index(source) < 0:
                columns[field.name] = [None] * batch.num_rows
                continue
            values = []
            for offset, raw in enumerate(batch.column(source).to_pylist()):
                try:
                    values.append(_READERS[field.name](raw))
                except _Unreadable as why:
                    unreadable.append(RowError(first_row + offset, field.name, str(why)))
                    values.append(None)
            columns[field.name] = values
        if unreadable:
            first = unreadable[0]
            raise ShapeMismatch(
                f"Row {first.row}: `{shape.column_of.get(first.field or '', first.field)}` cannot be read as a "
                f"preference {first.field}: {first.message}.",
                unreadable,
            )
        try:
            return pa.RecordBatch.from_pydict(columns, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:  # pragma: no cover - the readers return the schema's types
            raise ShapeMismatch(f"The preference columns could not be read: {error}") from None

    def check_rows(self, batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
        for problem in row_problems(batch, shape, first_row):
            log.add(problem)

    def row_messages(self, shape: str, row: dict[str, Any]) -> list[dict[str, str]] | None:
        """The prompt and its (chosen) answer."""
        answer = row.get("chosen") if shape == "preference" else row.get("completion")
        prompt = [{"role": m["role"] or "", "content": m["content"] or ""} for m in row.get("prompt") or []]
        return [*prompt, {"role": "assistant", "content": answer or ""}]

    def profile_extras(self, shape: str) -> ProfileExtras:
        return LengthBias() if shape == "preference" else ProfileExtras()


KIND = PreferenceKind()
