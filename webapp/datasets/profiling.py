"""The quality profile of a dataset, built batch by batch (no Django here): counts, duplicates, lengths,
split leakage, and what the task's kind adds (labels, scores, tags...); token lengths and chat-template
previews come from a sample of rows."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webapp.datasets import kinds
from webapp.datasets.normalizing import row_messages, training_text
from webapp.datasets.shapes import EXPECTED_COLUMNS, OPTIONAL_COLUMNS
from webapp.lib.errors import RowError

SAMPLE_ROWS = 1000
PREVIEW_ROWS = 5
HISTOGRAM_BINS = 20
# Near duplicates compare a row's first and last characters after lowercasing and dropping spaces
# and punctuation: it catches case, spacing and punctuation edits; only the ends are compared to
# keep the cost per row fixed.
NEAR_KEY_CHARS = 64
_SEP_FIELD, _SEP_ITEM, _SEP_PART = "\x1f", "\x1e", "\x1d"
# Unfilled template variables: `{{ anything }}`, or `{name}` around the name of a column (the file's or an
# expected one) or a usual prompt variable. Any `{word}` would flag code and JSON in the data.
PLACEHOLDER_WORDS = ("name", "query", "prompt", "question", "answer", "response", "context", "system", "user")
PLACEHOLDER_ROWS_LISTED = 20


class Tokenizer(Protocol):
    chat_template: Any

    def __call__(self, text: list[str], **kwargs: Any) -> Any: ...

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


def _text(array: pa.Array) -> pa.Array:
    return pc.fill_null(array, "")


def _join_list(array: pa.Array, values: pa.Array) -> pa.Array:
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    rebuilt = pa.ListArray.from_arrays(pa.array(offsets), values)
    return pc.binary_join(rebuilt, _SEP_ITEM)


def row_keys(batch: pa.RecordBatch) -> pa.Array:
    """One string per row holding all its content, for duplicate and leakage checks, whatever the shape."""
    columns = []
    for name in batch.schema.names:
        array = batch.column(name)
        if pa.types.is_list(array.type) and pa.types.is_struct(array.type.value_type):  # turns: chat, a prompt
            flat = pc.list_flatten(array)
            parts = pc.binary_join_element_wise(
                _text(pc.struct_field(flat, "role")), _text(pc.struct_field(flat, "content")), _SEP_PART
            )
            array = _join_list(array, parts)
        elif pa.types.is_list(array.type):
            array = _join_list(array, _text(pc.list_flatten(array)))
        elif not pa.types.is_string(array.type):
            array = array.cast(pa.string())
        columns.append(_text(array))
    if len(columns) == 1:
        return columns[0]
    return pc.binary_join_element_wise(*columns, _SEP_FIELD)


# Bytes a near-duplicate key keeps: ASCII letters and digits, and every byte of non-ASCII characters.
_KEPT_BYTES = np.array([byte >= 0x80 or chr(byte).isalnum() for byte in range(256)])


def near_keys(keys: pa.Array) -> pa.Array:
    """A row's first and last characters, lowercased, without ASCII spaces and punctuation: rows
    that share a long template prefix but end differently are not near duplicates. Filtering the
    bytes with numpy costs a tenth of a regex replacement."""
    head = pc.utf8_slice_codeunits(keys, 0, NEAR_KEY_CHARS)
    tail = pc.utf8_slice_codeunits(keys, -NEAR_KEY_CHARS)
    ends = pc.utf8_lower(pc.binary_join_element_wise(head, tail, _SEP_FIELD)).cast(pa.binary())
    if isinstance(ends, pa.ChunkedArray):
        ends = ends.combine_chunks()
    rows = len(ends)
    _, offsets_buffer, data_buffer = ends.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=rows + 1, offset=ends.offset * 4)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]] if data_buffer else np.zeros(0, np.uint8)
    kept = _KEPT_BYTES[data]
    kept_before = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum(kept, out=kept_before[1:])
    new_offsets = kept_before[offsets - offsets[0]]
    return pa.Array.from_buffers(
        pa.binary(), rows, [None, pa.py_buffer(new_offsets), pa.py_buffer(np.ascontiguousarray(data[kept]))]
    )


def fingerprints(keys: pa.Array) -> np.ndarray:
    """64-bit hashes of the keys. As bytes, not str: no UTF-8 decoding and re-encoding (3x faster)."""
    return pd.util.hash_array(keys.cast(pa.binary()).to_numpy(zero_copy_only=False), categorize=False)


def _bin_width(span: int) -> int:
    """A round bin width (1, 2 or 5 times a power of ten) giving at most about HISTOGRAM_BINS bins."""
    wanted = span / HISTOGRAM_BINS
    if wanted <= 1:
        return 1
    power = 10 ** int(np.floor(np.log10(wanted)))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= wanted)


def _histogram(values: np.ndarray, upper: int | None = None) -> dict[str, Any]:
    """Counts in round bins over the data's own range, so short rows do not all fall into one bar.

    A long tail (the longest row more than twice the 99th percentile) goes into one open-ended bin,
    `overflow`, from the last edge up. A maximum length `upper` gets an edge right after it, so that a
    bar is either wholly kept or wholly truncated (the bins are then uneven at the ends).
    """
    if not len(values):
        return {"bins": [], "counts": [], "overflow": 0}
    low, high = int(values.min()), int(values.max())
    tail_start = int(np.percentile(values, 99, method="lower"))
    top = tail_start if high > 2 * max(tail_start, 1) else high
    width = _bin_width(top - low + 1)
    aligned = upper is not None and low <= upper <= top
    start = low - ((low - (upper + 1)) % width) if aligned and upper is not None else (low // width) * width
    edges = [int(edge) for edge in start + width * np.arange(-(-(top + 1 - start) // width) + 1)]
    if aligned:
        edges[0] = low
    if upper is not None and edges[-1] <= upper < high:
        edges.append(upper + 1)
    inside = values[values < edges[-1]]
    counts, _ = np.histogram(inside, bins=np.array(edges))
    return {"bins": edges, "counts": [int(count) for count in counts], "overflow": int(len(values) - len(inside))}


def _stats(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {"min": 0, "mean": 0, "p50": 0, "p95": 0, "max": 0}
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 1),
        "p50": int(np.percentile(values, 50)),
        "p95": int(np.percentile(values, 95)),
        "max": int(values.max()),
    }


class ProfileBuilder:
    """Feed canonical batches with `add`; `result()` gives the profile as JSON-ready data."""

    def __init__(self, shape: str, source_columns: list[str], seed: int = 0) -> None:
        self.shape = shape
        self.source_columns = source_columns
        self.rows: Counter[str] = Counter({"train": 0})
        self.missing: Counter[str] = Counter()
        self.source_nulls: Counter[str] = Counter()
        self.extras = kinds.of_shape(shape).profile_extras(shape)
        self.exact: dict[str, list[np.ndarray]] = {"train": [], "validation": []}
        self.near: dict[str, list[np.ndarray]] = {"train": [], "validation": []}
        self.char_lengths: list[np.ndarray] = []
        self.preview: list[dict[str, Any]] = []
        self.sample: list[dict[str, Any]] = []
        self.placeholder_rows: dict[str, list[int]] = {"train": [], "validation": []}
        self.placeholder_count: Counter[str] = Counter()
        self.placeholders: Counter[str] = Counter()
        self._placeholder = _placeholder_pattern(source_columns)
        self._seen = 0
        self._random = np.random.default_rng(seed)

    def add_source(self, batch: pa.RecordBatch) -> None:
        for name in batch.schema.names:
            self.source_nulls[name] += batch.column(name).null_count

    def add(
        self, batch: pa.RecordBatch, keys: pa.Array, exact: np.ndarray, to_validation: np.ndarray | None,
        split: str = "train", first_row: int | None = None,
    ) -> None:
        """A canonical batch; `to_validation` marks its rows held out (None: all rows go to `split`).
        `first_row` is the file's row number of its first row (1-based; rows of the validation file when
        `split` is validation)."""
        rows = batch.num_rows
        self._find_placeholders(keys, "validation" if to_validation is None and split == "validation" else "train", first_row)
        for name in batch.schema.names:
            array = batch.column(name)
            if pa.types.is_list(array.type):
                empty = pc.or_kleene(pc.is_null(array), pc.equal(pc.list_value_length(array), 0))
            elif not pa.types.is_string(array.type):  # KTO's boolean label
                empty = pc.is_null(array)
            else:
                empty = pc.or_kleene(pc.is_null(array), pc.equal(pc.binary_length(array), 0))
            self.missing[name] += int(pc.sum(pc.cast(pc.fill_null(empty, True), pa.int64())).as_py() or 0)
        self.extras.add(batch)
        near = fingerprints(near_keys(keys))
        if to_validation is None:
            self.rows[split] += rows
            self.exact[split].append(exact)
            self.near[split].append(near)
        else:
            held_out = int(to_validation.sum())
            self.rows["train"] += rows - held_out
            self.rows["validation"] += held_out
            self.exact["train"].append(exact[~to_validation])
            self.near["train"].append(near[~to_validation])
            self.exact["validation"].append(exact[to_validation])
            self.near["validation"].append(near[to_validation])
        self.char_lengths.append(pc.utf8_length(keys).to_numpy(zero_copy_only=False).astype(np.int64))
        self._keep_sample(batch)

    def _find_placeholders(self, keys: pa.Array, source: str, first_row: int | None) -> None:
        braced = _rows_with_byte(keys, ord("{"))
        if not len(braced):
            return
        found = pc.fill_null(pc.match_substring_regex(keys.take(pa.array(braced)), self._placeholder), False)
        positions = braced[found.to_numpy(zero_copy_only=False)]
        if not len(positions):
            return
        self.placeholder_count[source] += len(positions)
        listed = self.placeholder_rows[source]
        if first_row is not None and len(listed) < PLACEHOLDER_ROWS_LISTED:
            listed.extend(int(position) + first_row for position in positions[: PLACEHOLDER_ROWS_LISTED - len(listed)])
        matches = pc.extract_regex(keys.take(pa.array(positions)), f"(?P<placeholder>{self._placeholder})")
        for item in pc.value_counts(pc.struct_field(matches, "placeholder")).to_pylist():
            text = str(item["values"])
            self.placeholders[text[text.index("{") :]] += int(item["counts"])  # without the character before it

    def _keep_sample(self, batch: pa.RecordBatch) -> None:
        """The first rows for the preview, and a uniform reservoir sample for the token lengths."""
        if len(self.preview) < PREVIEW_ROWS:
            self.preview.extend(batch.slice(0, PREVIEW_ROWS - len(self.preview)).to_pylist())
        rows = batch.num_rows
        seen = self._seen + np.arange(1, rows + 1)
        self._seen += rows
        fill = max(0, min(SAMPLE_ROWS - len(self.sample), rows))
        if fill:
            self.sample.extend(batch.slice(0, fill).to_pylist())
        later = np.arange(fill, rows)
        if not len(later):
            return
        slots = (self._random.random(len(later)) * seen[later]).astype(np.int64)
        chosen = slots < SAMPLE_ROWS
        if chosen.any():
            taken = batch.take(pa.array(later[chosen])).to_pylist()
            for slot, row in zip(slots[chosen], taken, strict=True):
                self.sample[int(slot)] = row

    def file_errors(self) -> list[RowError]:
        """Problems of the file as a whole that its kind finds once every row is in (one class only...)."""
        return self.extras.file_errors()

    def result(self) -> dict[str, Any]:
        train_exact = np.concatenate(self.exact["train"]) if self.exact["train"] else np.zeros(0, np.uint64)
        valid_exact = np.concatenate(self.exact["validation"]) if self.exact["validation"] else np.zeros(0, np.uint64)
        train_near = np.concatenate(self.near["train"]) if self.near["train"] else np.zeros(0, np.uint64)
        valid_near = np.concatenate(self.near["validation"]) if self.near["validation"] else np.zeros(0, np.uint64)
        all_exact = np.concatenate([train_exact, valid_exact])
        all_near = np.concatenate([train_near, valid_near])
        total = int(len(all_exact))
        exact_duplicates = total - len(np.unique(all_exact))
        near_duplicates = total - len(np.unique(all_near)) - exact_duplicates
        lengths = np.concatenate(self.char_lengths) if self.char_lengths else np.zeros(0, np.int64)
        profile: dict[str, Any] = {
            "shape": self.shape,
            "rows": total,
            "splits": dict(self.rows),
            "columns": self.source_columns,
            # An optional column left empty is not missing: it is reported apart.
            "missing": {name: int(count) for name, count in self.missing.items() if name not in OPTIONAL_COLUMNS},
            "optional_empty": {name: int(count) for name, count in self.missing.items() if name in OPTIONAL_COLUMNS},
            "source_nulls": {name: int(count) for name, count in self.source_nulls.items() if count},
            "duplicates": {
                "exact": int(exact_duplicates),
                "near": int(max(near_duplicates, 0)),
                "exact_share": round(exact_duplicates / total, 4) if total else 0.0,
                "near_rule": (
                    f"same first and last {NEAR_KEY_CHARS} characters after lowercasing and dropping spaces and punctuation"
                ),
            },
            "char_lengths": {**_stats(lengths), "histogram": _histogram(lengths)},
            "leakage": self._leakage(train_exact, valid_exact, train_near, valid_near),
            "warnings": [],
        }
        self.extras.result(profile, self.sample)
        profile["placeholders"] = self._placeholder_profile(profile["warnings"])
        if exact_duplicates:
            profile["warnings"].append(f"{exact_duplicates:,} rows are exact duplicates of earlier rows.")
        if profile["leakage"]["exact"]:
            profile["warnings"].append(
                f"{profile['leakage']['exact']:,} validation rows also appear in the training split (leakage)."
            )
        return profile

    def _placeholder_profile(self, warnings: list[str]) -> dict[str, Any]:
        rows = int(sum(self.placeholder_count.values()))
        result: dict[str, Any] = {
            "rows": rows,
            "first_rows": list(self.placeholder_rows["train"]),
            "validation_rows": list(self.placeholder_rows["validation"]),
            "found": {text[:60]: int(count) for text, count in self.placeholders.most_common(10)},
        }
        if rows:
            examples = ", ".join(f"`{text}`" for text in list(result["found"])[:3])
            where = ", ".join(str(row) for row in result["first_rows"][:10])
            listed = f" (rows {where}{', ...' if rows > 10 else ''})" if where else ""
            warnings.append(f"{rows:,} rows hold unfilled template placeholders such as {examples}{listed}.")
        return result

    def _leakage(
        self, train_exact: np.ndarray, valid_exact: np.ndarray, train_near: np.ndarray, valid_near: np.ndarray
    ) -> dict[str, Any]:
        if not len(valid_exact):
            return {"validation_rows": 0, "exact": 0, "near": 0, "share": 0.0}
        exact = int(np.isin(valid_exact, train_exact).sum())
        near = int(np.isin(valid_near, train_near).sum())
        return {
            "validation_rows": int(len(valid_exact)),
            "exact": exact,
            "near": near,
            "share": round(near / len(valid_exact), 4),
        }


def _rows_with_byte(keys: pa.Array, byte: int) -> np.ndarray:
    """Positions of the rows whose text holds `byte`, read off the raw buffers: most rows hold no brace,
    and this costs a hundredth of a pattern (or of Arrow's substring search) over every row."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    rows = len(keys)
    wide = pa.types.is_large_string(keys.type) or pa.types.is_large_binary(keys.type)
    _, offsets_buffer, data_buffer = keys.buffers()
    if not rows or data_buffer is None:
        return np.zeros(0, np.int64)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32, count=rows + 1, offset=keys.offset * (8 if wide else 4))
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    hits = np.flatnonzero(data == byte) + offsets[0]
    return np.unique(np.searchsorted(offsets, hits, side="right") - 1)


def _placeholder_pattern(source_columns: list[str]) -> str:
    """An RE2 pattern (Arrow's) for unfilled template variables; names are matched case-insensitively."""
    # Only names of letters, digits and underscores: nothing in them needs escaping.
    words = {*EXPECTED_COLUMNS, *PLACEHOLDER_WORDS}
    words |= {column.strip() for column in source_columns if column.strip().replace("_", "").isalnum()}
    names = "|".join(sorted(words, key=len, reverse=True))
    return r"\{\{\s*[A-Za-z_][\w.\-]*\s*\}\}|(?:^|[^{])\{\s*(?i:" + names + r")\s*\}"


def _render(tokenizer: Tokenizer | None, shape: str, row: dict[str, Any]) -> tuple[str, bool]:
    """The text a row becomes in training: through the chat template when the model has one."""
    messages = row_messages(shape, row)
    if tokenizer is not None and messages and getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False)), True
    return training_text(shape, row), False


def token_length_profile(
    sample: list[dict[str, Any]], shape: str, tokenizer: Tokenizer, max_length: int, model_name: str
) -> dict[str, Any]:
    """Token lengths of a sample of rows with a base model's tokenizer, against `max_length`."""
    kind = kinds.of_shape(shape)
    texts = [kind.tokenized_text(shape, row, _render(tokenizer, shape, row)[0]) for row in sample]
    if not texts:
        return {"model": model_name, "max_length": max_length, "sampled_rows": 0}
    encoded = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
    lengths = np.array([len(ids) for ids in encoded["input_ids"]], dtype=np.int64)
    truncated = float((lengths > max_length).mean())
    return {
        "model": model_name,
        "max_length": max_length,
        "sampled_rows": int(len(lengths)),
        **_stats(lengths),
        "truncated_share": round(truncated, 4),
        "histogram": _histogram(lengths, upper=max_length),
    }


PREVIEW_CHARS = 4000


def _clip(value: Any) -> Any:
    """Previews are stored with the dataset as JSON: long fields are cut (the page says so with an ellipsis)."""
    if isinstance(value, str):
        return value if len(value) <= PREVIEW_CHARS else value[:PREVIEW_CHARS] + "…"
    if isinstance(value, float) and not math.isfinite(value):  # a bad score: JSON holds no NaN or infinity
        return str(value)
    if isinstance(value, list):
        return [_clip(item) for item in value[:50]]
    if isinstance(value, dict):
        return {key: _clip(item) for key, item in value.items()}
    return value


def template_preview(
    rows: list[dict[str, Any]], shape: str, tokenizer: Tokenizer | None
) -> list[dict[str, Any]]:
    """The first rows as training will see them (chat template applied for chat and instruction data)."""
    previews = []
    for row in rows:
        text, templated = _render(tokenizer, shape, row)
        previews.append({"row": _clip(row), "rendered": _clip(text), "chat_template": templated})
    return previews


def drop_exact_duplicates(parts: list[tuple[Path, Path]], batch_rows: int = 65_536) -> int:
    """Copy each (normalized Parquet file, target) pair without the rows that repeat an earlier row exactly,
    by the profile's own rule (the same keys and hashes); earlier parts count as earlier rows, so a
    validation row repeating a training row goes too. Parts may share a target. Returns the rows dropped.

    Two passes: the hashes of every row first (8 bytes a row), then the copy of the first occurrences."""
    hashes = []
    for source, _ in parts:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_rows):
            hashes.append(fingerprints(row_keys(batch)))
    every = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    keep = np.zeros(len(every), dtype=bool)
    keep[np.unique(every, return_index=True)[1]] = True
    writers: dict[Path, pq.ParquetWriter] = {}
    position = 0
    try:
        for source, target in parts:
            file = pq.ParquetFile(source)
            if target not in writers:
                writers[target] = pq.ParquetWriter(target, file.schema_arrow)
            for batch in file.iter_batches(batch_size=batch_rows):
                kept = keep[position : position + batch.num_rows]
                position += batch.num_rows
                writers[target].write_batch(batch.filter(pa.array(kept)))
    finally:
        for writer in writers.values():
            writer.close()
    return int(len(every) - keep.sum())
