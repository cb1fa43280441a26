"""Row checks on canonical batches, vectorized with Arrow: what is missing, empty, too big or malformed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets import preference
from webapp.lib.errors import RowError

LISTED_ERRORS = 50
MAX_FIELD_BYTES = 1024 * 1024
CHAT_ROLES = ("system", "user", "assistant", "tool")
TEXT_FIELDS = {
    "instruction": ("instruction", "output"),
    "text": ("text",),
    "classification": ("text", "label"),
    "regression": ("text",),
    "seq2seq": ("source", "target"),
}


class ErrorLog:
    """Keeps the first LISTED_ERRORS row errors in row order and counts them all."""

    def __init__(self, limit: int = LISTED_ERRORS) -> None:
        self.limit = limit
        self.listed: list[RowError] = []
        self.total = 0
        self._full = False

    def add(self, error: RowError) -> None:
        self.total += 1
        self.listed.append(error)
        self._trim()

    def add_rows(self, rows: np.ndarray, field: str | None, messages: str | list[str]) -> None:
        """Errors at 1-based `rows`; `messages` is one text for all or one per row."""
        self.total += len(rows)
        # Batches arrive in row order: once a batch ends with the list full, later rows never make it.
        room = 0 if self._full else self.limit
        for index in range(min(len(rows), room)):
            message = messages if isinstance(messages, str) else messages[index]
            self.listed.append(RowError(int(rows[index]), field, message))

    def extend(self, errors: list[RowError], total: int) -> None:
        self.total += total
        self.listed.extend(errors)
        self._trim()

    def _trim(self) -> None:
        self.listed.sort(key=lambda error: (error.row is not None, error.row or 0))
        del self.listed[self.limit :]

    def end_batch(self) -> None:
        self._trim()
        self._full = len(self.listed) >= self.limit


def _bad(mask: pa.Array) -> np.ndarray:
    """Positions where a boolean Arrow mask is true (nulls count as false)."""
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))


def _size(nbytes: int) -> str:
    return f"{nbytes / (1024 * 1024):.1f} MB" if nbytes >= 1024 * 1024 else f"{nbytes / 1024:.0f} kB"


def _check_text(array: pa.Array, field: str, first_row: int, log: ErrorLog, required: bool = True) -> None:
    missing = _bad(pc.is_null(array))
    if required:
        log.add_rows(missing + first_row, field, f"`{field}` is missing")
    lengths = pc.binary_length(array)
    empty = pc.or_kleene(pc.equal(lengths, 0), pc.utf8_is_space(array))
    if required:
        log.add_rows(_bad(empty) + first_row, field, f"`{field}` is empty")
    too_big = _bad(pc.greater(lengths, MAX_FIELD_BYTES))
    if len(too_big):
        sizes = lengths.to_numpy(zero_copy_only=False)
        messages = [f"`{field}` is {_size(int(sizes[i]))}; the limit is {_size(MAX_FIELD_BYTES)} per field" for i in too_big]
        log.add_rows(too_big + first_row, field, messages)


def _check_numbers(array: pa.Array, field: str, first_row: int, log: ErrorLog) -> None:
    """A float column as `normalizing` made it: null where the value was missing, NaN where it was no number."""
    log.add_rows(_bad(pc.is_null(array)) + first_row, field, f"`{field}` is missing")
    log.add_rows(_bad(pc.is_nan(array)) + first_row, field, f"`{field}` is not a number")
    log.add_rows(_bad(pc.is_inf(array)) + first_row, field, f"`{field}` is infinite")


def _list_layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: length and offset into the flattened values; per value: its row."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    parents = np.repeat(np.arange(len(lengths)), lengths)
    return lengths, offsets, parents


def _row_bytes(values: pa.Array, parents: np.ndarray, rows: int) -> np.ndarray:
    sizes = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=sizes, minlength=rows)


def _check_too_big(totals: np.ndarray, field: str, first_row: int, log: ErrorLog) -> None:
    too_big = np.flatnonzero(totals > MAX_FIELD_BYTES)
    if len(too_big):
        messages = [f"`{field}` is {_size(int(totals[i]))}; the limit is {_size(MAX_FIELD_BYTES)} per field" for i in too_big]
        log.add_rows(too_big + first_row, field, messages)


def _check_messages(array: pa.Array, first_row: int, log: ErrorLog) -> None:
    rows = len(array)
    log.add_rows(_bad(pc.is_null(array)) + first_row, "messages", "`messages` is missing")
    lengths, offsets, parents = _list_layout(array)
    null_rows = pc.is_null(array).to_numpy(zero_copy_only=False)
    empty = np.flatnonzero((lengths == 0) & ~null_rows)
    log.add_rows(empty + first_row, "messages", "`messages` is an empty list")
    flat = pc.list_flatten(array)
    roles = pc.struct_field(flat, "role")
    contents = pc.struct_field(flat, "content")
    position = np.arange(len(parents)) - offsets[parents] + 1 if len(parents) else np.zeros(0, dtype=np.int64)

    no_role = _bad(pc.or_kleene(pc.is_null(roles), pc.equal(pc.utf8_trim_whitespace(roles), "")))
    log.add_rows(parents[no_role] + first_row, "messages", [f"message {position[i]} has no role" for i in no_role])
    unknown = _bad(pc.and_kleene(pc.invert(pc.is_in(roles, pa.array(CHAT_ROLES))), pc.greater(pc.binary_length(roles), 0)))
    role_values = roles.to_numpy(zero_copy_only=False) if len(unknown) else np.zeros(0)
    log.add_rows(
        parents[unknown] + first_row,
        "messages",
        [f"message {position[i]} has role `{str(role_values[i])[:40]}`; roles are {', '.join(CHAT_ROLES)}" for i in unknown],
    )
    needs_content = pc.invert(pc.fill_null(pc.equal(roles, "system"), False))
    no_content = _bad(pc.and_kleene(needs_content, pc.or_kleene(pc.is_null(contents), pc.equal(pc.binary_length(contents), 0))))
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
    _check_too_big(_row_bytes(contents, parents, rows), "messages", first_row, log)


def _check_tokens(batch: pa.RecordBatch, first_row: int, log: ErrorLog) -> None:
    tokens, tags = batch.column("tokens"), batch.column("tags")
    for array, name in ((tokens, "tokens"), (tags, "tags")):
        log.add_rows(_bad(pc.is_null(array)) + first_row, name, f"`{name}` is missing")
    token_lengths, _, token_parents = _list_layout(tokens)
    tag_lengths, _, tag_parents = _list_layout(tags)
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
    empty_tag = _bad(pc.or_kleene(pc.is_null(flat_tags), pc.equal(pc.binary_length(flat_tags), 0)))
    rows_with_empty_tag = np.unique(tag_parents[empty_tag])
    log.add_rows(rows_with_empty_tag + first_row, "tags", "a tag is empty")
    rows = batch.num_rows
    _check_too_big(_row_bytes(pc.list_flatten(tokens), token_parents, rows), "tokens", first_row, log)
    _check_too_big(_row_bytes(flat_tags, tag_parents, rows), "tags", first_row, log)


def check_batch(batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
    """Record every row problem of a canonical batch whose first row is `first_row` (1-based)."""
    if shape in preference.SHAPES:
        for problem in preference.row_problems(batch, shape, first_row):
            log.add(problem)
    elif shape == "chat":
        _check_messages(batch.column("messages"), first_row, log)
    elif shape == "token_classification":
        _check_tokens(batch, first_row, log)
    else:
        for field in TEXT_FIELDS[shape]:
            _check_text(batch.column(field), field, first_row, log)
        if shape == "instruction":
            _check_text(batch.column("input"), "input", first_row, log, required=False)
        if shape == "regression":
            _check_numbers(batch.column("score"), "score", first_row, log)
    log.end_batch()


# A column of the wrong kind is wrong in every row: the first few are listed, the rest counted.
MISFIT_ROWS_LISTED = 5
_WITH_ARTICLE = {"text": "text", "list": "a list", "object": "an object"}


def _kind_of(kind: pa.DataType) -> str:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "list"
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return "object"
    return "text"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def column_misfits(batch: pa.RecordBatch, column_of: dict[str, str], wanted: pa.Schema, first_row: int) -> list[RowError]:
    """Rows whose value cannot play the expected column it is mapped onto (a list where text is needed...):
    a mapping that does not fit is told row by row, like any other row problem."""
    errors: list[RowError] = []
    for expected, source in column_of.items():
        if source not in batch.schema.names or expected not in wanted.names:
            continue
        array = batch.column(source)
        have, need = _kind_of(array.type), _kind_of(wanted.field(expected).type)
        if have == need:
            continue
        filled = _bad(pc.is_valid(array))
        rows = filled[:MISFIT_ROWS_LISTED]
        values = array.take(pa.array(rows)).to_pylist() if len(rows) else []
        errors += [
            RowError(
                int(row) + first_row, expected,
                f"`{source}` holds {_WITH_ARTICLE[have]} here ({_shown(value)}); `{expected}` needs {_WITH_ARTICLE[need]}",
            )
            for row, value in zip(rows, values, strict=True)
        ]
        if len(filled) > len(rows):  # a whole column of the wrong kind: a few rows say it, a count says the rest
            more = len(filled) - len(rows)
            errors.append(RowError(None, expected, f"and {more:,} more row{'s' if more != 1 else ''} of `{source}` like these"))
    return errors
