"""Row checks a kind's `check_rows` is built from, vectorized with Arrow: what is missing, empty, too big or
not a number, recorded with 1-based row numbers in an ErrorLog."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.lib.errors import RowError

LISTED_ERRORS = 50
MAX_FIELD_BYTES = 1024 * 1024


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


def bad(mask: pa.Array) -> np.ndarray:
    """Positions where a boolean Arrow mask is true (nulls count as false)."""
    return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))


def size(nbytes: int) -> str:
    return f"{nbytes / (1024 * 1024):.1f} MB" if nbytes >= 1024 * 1024 else f"{nbytes / 1024:.0f} kB"


def check_text(array: pa.Array, field: str, first_row: int, log: ErrorLog, required: bool = True) -> None:
    """A text column: missing or empty (when required), or over MAX_FIELD_BYTES."""
    missing = bad(pc.is_null(array))
    if required:
        log.add_rows(missing + first_row, field, f"`{field}` is missing")
    lengths = pc.binary_length(array)
    empty = pc.or_kleene(pc.equal(lengths, 0), pc.utf8_is_space(array))
    if required:
        log.add_rows(bad(empty) + first_row, field, f"`{field}` is empty")
    too_big = bad(pc.greater(lengths, MAX_FIELD_BYTES))
    if len(too_big):
        sizes = lengths.to_numpy(zero_copy_only=False)
        messages = [f"`{field}` is {size(int(sizes[i]))}; the limit is {size(MAX_FIELD_BYTES)} per field" for i in too_big]
        log.add_rows(too_big + first_row, field, messages)


def check_numbers(array: pa.Array, field: str, first_row: int, log: ErrorLog) -> None:
    """A float column as normalization made it: null where the value was missing, NaN where it was no number."""
    log.add_rows(bad(pc.is_null(array)) + first_row, field, f"`{field}` is missing")
    log.add_rows(bad(pc.is_nan(array)) + first_row, field, f"`{field}` is not a number")
    log.add_rows(bad(pc.is_inf(array)) + first_row, field, f"`{field}` is infinite")


def list_layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: length and offset into the flattened values; per value: its row."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    parents = np.repeat(np.arange(len(lengths)), lengths)
    return lengths, offsets, parents


def row_bytes(values: pa.Array, parents: np.ndarray, rows: int) -> np.ndarray:
    """Bytes of a list column's values summed per row (`parents` from list_layout)."""
    sizes = pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False)
    return np.bincount(parents, weights=sizes, minlength=rows)


def check_too_big(totals: np.ndarray, field: str, first_row: int, log: ErrorLog) -> None:
    too_big = np.flatnonzero(totals > MAX_FIELD_BYTES)
    if len(too_big):
        messages = [f"`{field}` is {size(int(totals[i]))}; the limit is {size(MAX_FIELD_BYTES)} per field" for i in too_big]
        log.add_rows(too_big + first_row, field, messages)
