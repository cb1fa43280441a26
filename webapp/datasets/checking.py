"""One pass over a dataset file: read, detect the shape, validate, profile, split and normalize (no Django).

The background task and the benchmark both call `check_file`; it never raises for bad content:
every problem a person can fix comes back in `CheckResult.error` / `errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from webapp.datasets import profiling
from webapp.datasets.normalizing import NormalizedWriter, canonicalize
from webapp.datasets.reading import BatchStream, read_batches
from webapp.datasets.shapes import Shape, detect_shape
from webapp.datasets.validation import ErrorLog, check_batch
from webapp.lib.errors import LayercakeError, RowError

# Rows go to validation by their content's hash: deterministic, streaming, and duplicates stay together.
SPLIT_BUCKETS = 10_000


@dataclass
class CheckOptions:
    fmt: str
    task: str = ""
    mapping: dict[str, str] = field(default_factory=dict)
    validation_fraction: float = 0.0
    validation_path: Path | None = None
    validation_fmt: str = ""
    tokenizer: profiling.Tokenizer | None = None
    model_name: str = ""
    max_length: int = 1024


@dataclass
class CheckResult:
    ok: bool
    error: str = ""
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    shape: str = ""
    task: str = ""
    columns: list[str] = field(default_factory=list)
    rows: int = 0
    profile: dict[str, Any] = field(default_factory=dict)
    preview: list[dict[str, Any]] = field(default_factory=list)
    normalized: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_file(path: Path, options: CheckOptions, workdir: Path) -> CheckResult:
    """Check `path`; write the normalized Parquet files into `workdir` when it is valid."""
    try:
        return _check(path, options, workdir)
    except LayercakeError as problem:
        return CheckResult(ok=False, error=problem.message, errors=list(problem.details), error_count=len(problem.details))
    except MemoryError:
        return CheckResult(ok=False, error="The file needs more memory to check than this server has: split it into smaller files.")


def _check(path: Path, options: CheckOptions, workdir: Path) -> CheckResult:
    stream = read_batches(path, options.fmt, workdir)
    try:
        shape = detect_shape(stream.columns, options.task, options.mapping)
    except LayercakeError as problem:  # keep the columns: the mapping step offers them
        return CheckResult(ok=False, error=problem.message, errors=list(problem.details), columns=stream.columns)
    validation_stream, validation_shape = None, shape
    if options.validation_path is not None:
        validation_dir = workdir / "validation-source"
        validation_dir.mkdir(exist_ok=True)
        validation_stream = read_batches(options.validation_path, options.validation_fmt or options.fmt, validation_dir)
        try:
            validation_shape = detect_shape(validation_stream.columns, shape.task, options.mapping)
        except LayercakeError as problem:
            raise LayercakeError(f"The validation file does not match the training file: {problem.message}") from None
        if validation_shape.name != shape.name:
            raise LayercakeError(
                f"The validation file does not match the training file: it holds {validation_shape.name} data, "
                f"the training file {shape.name} data."
            )

    log = ErrorLog()
    builder = profiling.ProfileBuilder(shape.name, stream.columns)
    writer = NormalizedWriter(workdir, shape.name)
    try:
        fraction = 0.0 if validation_stream is not None else options.validation_fraction
        _consume(stream, shape, builder, writer, log, fraction, fixed_split=None)
        if validation_stream is not None:
            validation_log = ErrorLog()
            _consume(validation_stream, validation_shape, builder, writer, validation_log, 0.0, fixed_split="validation")
            for error in validation_log.listed:
                log.add(RowError(error.row, error.field, f"in the validation file: {error.message}"))
            log.total += validation_log.total - len(validation_log.listed)
    finally:
        normalized = writer.close()

    notes = stream.notes + (validation_stream.notes if validation_stream else [])
    profile = builder.result()
    profile["notes"] = notes
    rows = profile["rows"]
    if rows == 0 and not log.total:
        return CheckResult(ok=False, error="The file holds no rows (only a header, or nothing).", shape=shape.name, columns=stream.columns)
    if shape.name == "classification" and builder.class_count() < 2 and not log.total:
        only = next(iter(builder.labels), "")
        log.add(RowError(None, "label", f"classification needs at least two classes in `label`; every row has `{only[:60]}`"))
    if options.validation_fraction and validation_stream is None and builder.rows["validation"] == 0:
        profile["warnings"].append("The validation fraction is so small that no row went to validation.")
    tokenizer = options.tokenizer
    if tokenizer is not None:
        # A model's chat template may refuse some rows (a role it does not know): say so, go on.
        try:
            profile["tokens"] = profiling.token_length_profile(
                builder.sample, shape.name, tokenizer, options.max_length, options.model_name
            )
        except Exception as exc:
            profile["warnings"].append(f"Token lengths with {options.model_name} failed: {str(exc)[:200]}")
            tokenizer = None
    try:
        preview = profiling.template_preview(builder.preview, shape.name, tokenizer)
    except Exception as exc:
        profile["warnings"].append(f"The chat template of {options.model_name} failed on a preview row: {str(exc)[:200]}")
        preview = profiling.template_preview(builder.preview, shape.name, None)
    result = CheckResult(
        ok=not log.total,
        errors=log.listed,
        error_count=log.total,
        shape=shape.name,
        task=shape.task,
        columns=stream.columns,
        rows=rows,
        profile=profile,
        preview=preview,
        notes=notes,
    )
    if log.total:
        result.error = _summary(log)
        for file in normalized.values():
            file.unlink(missing_ok=True)
    else:
        result.normalized = normalized
    return result


def _summary(log: ErrorLog) -> str:
    first = log.listed[0] if log.listed else None
    where = ""
    if first is not None:
        named = first.message if not first.field or f"`{first.field}`" in first.message else f"`{first.field}`, {first.message}"
        where = f"row {first.row}: {named}" if first.row is not None else named
    if log.total == 1 and first is not None:
        return f"1 problem: {where}."
    shown = f" (the first {len(log.listed)} are listed)" if log.total > len(log.listed) else ""
    return f"{log.total:,} problems{shown}; the first: {where}." if first else f"{log.total:,} problems."


def _consume(
    stream: BatchStream,
    shape: Shape,
    builder: profiling.ProfileBuilder,
    writer: NormalizedWriter,
    log: ErrorLog,
    fraction: float,
    fixed_split: str | None,
) -> None:
    for item in stream.batches:
        builder.add_source(item.batch)
        batch = canonicalize(item.batch, shape)
        check_batch(batch, shape.name, item.first_row, log)
        keys = profiling.row_keys(batch, shape.name)
        exact = profiling.fingerprints(keys)
        if fixed_split:
            builder.add(batch, keys, exact, None, split=fixed_split)
            if not log.total:
                writer.write(fixed_split, batch)
            continue
        to_validation = (exact % SPLIT_BUCKETS) < int(round(fraction * SPLIT_BUCKETS)) if fraction else None
        builder.add(batch, keys, exact, to_validation)
        if log.total:  # once a row is bad the copy is thrown away: stop writing it
            continue
        if to_validation is None:
            writer.write("train", batch)
        else:
            writer.write("train", batch.filter(pa.array(~to_validation)))
            writer.write("validation", batch.filter(pa.array(to_validation)))
    if stream.row_error_count:
        log.extend(stream.row_errors, stream.row_error_count)
