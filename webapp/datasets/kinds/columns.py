"""Arrow conversions a kind's normalization is built from: a file's column made into a canonical one's type."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webapp.datasets.shapes import ShapeMismatch

# A conversation turn, as the OpenAI chat format and the training engine have it.
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])


def is_scalar_text(kind: pa.DataType) -> bool:
    """A type whose values read as text: strings, numbers, booleans (not lists, objects or binary data)."""
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


def describe(kind: pa.DataType) -> str:
    """A type as people name it: a list, an object, binary data."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "a list"
    if pa.types.is_struct(kind):
        return "an object"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "binary data"
    return str(kind)


def as_text(array: pa.Array, name: str, source: str) -> pa.Array:
    """Numbers and booleans become their text; lists and objects are refused for a text column."""
    if not is_scalar_text(array.type):
        raise ShapeMismatch(f"Column `{source}` (used as `{name}`) must hold text, but it holds {describe(array.type)}.")
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array.cast(pa.string())


def list_of_text(array: pa.Array, name: str, source: str) -> pa.Array:
    """Lists whose items become text; a column of anything but lists is refused."""
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.list_(pa.string()))
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        hint = " (CSV and TSV cannot hold lists: use JSONL or Parquet)" if pa.types.is_string(kind) else ""
        raise ShapeMismatch(f"Column `{source}` (used as `{name}`) must hold lists, but it holds {describe(kind)}{hint}.")
    values = as_text(pc.list_flatten(array), f"{name}[]", f"{source}[]")
    return rebuild_list(array, values, pa.list_(pa.string()))


def rebuild_list(array: pa.Array, values: pa.Array, kind: pa.DataType) -> pa.Array:
    """A list array over new values with the old row boundaries (and nulls), whatever its slicing."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = pc.is_null(array) if array.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=kind, mask=mask)
