"""Row checks on canonical batches: each task's kind records what is missing, empty, too big or malformed
(`kinds/checks.py` holds the vectorized Arrow checks they are built from); a mapped column of the wrong kind is
told here, row by row."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets import kinds
from webapp.datasets.kinds.checks import ErrorLog, bad
from webapp.lib.errors import RowError


def check_batch(batch: pa.RecordBatch, shape: str, first_row: int, log: ErrorLog) -> None:
    """Record every row problem of a canonical batch whose first row is `first_row` (1-based)."""
    kinds.of_shape(shape).check_rows(batch, shape, first_row, log)
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
        filled = bad(pc.is_valid(array))
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
