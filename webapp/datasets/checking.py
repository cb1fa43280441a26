"""One pass over a dataset file: read, detect the shape, check its rows, profile, split and normalize (no Django).

The background task and the benchmark both call `check_file`; it never raises for bad content:
every problem a person can fix comes back in `CheckResult.error` / `errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from webapp.datasets import profiling
from webapp.datasets.kinds.checks import ErrorLog
from webapp.datasets.layout import FileLayout, ReadChoice, layout_for, sniff_file
from webapp.datasets.normalizing import CANONICAL_SCHEMAS, NormalizedWriter, canonicalize, conversion_notes
from webapp.datasets.reading import BatchStream, read_batches
from webapp.datasets.row_checks import check_batch, column_misfits
from webapp.datasets.shapes import Shape, ShapeMismatch, detect_shape
from webapp.lib.errors import LayercakeError, RowError

# Rows go to validation by their content's hash: deterministic, streaming, and duplicates stay together.
SPLIT_BUCKETS = 10_000


@dataclass
class CheckOptions:
    fmt: str = ""  # a format name forces it; empty: sniffed from the content, with `filename` as a hint
    filename: str = ""
    choice: ReadChoice = field(default_factory=ReadChoice)
    validation_filename: str = ""
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
    # How the file was read (format, delimiter, header), what was odd on the way (row warnings).
    detected: dict[str, Any] = field(default_factory=dict)


def check_file(path: Path, options: CheckOptions, workdir: Path) -> CheckResult:
    """Check `path`; write the normalized Parquet files into `workdir` when it is valid."""
    detected: dict[str, Any] = {}
    try:
        result = _check(path, options, workdir, detected)
    except LayercakeError as problem:
        result = CheckResult(ok=False, error=problem.message, errors=list(problem.details), error_count=len(problem.details))
    except MemoryError:
        result = CheckResult(ok=False, error="The file needs more memory to check than this server has: split it into smaller files.")
    result.detected = detected
    return result


def _layout(path: Path, fmt: str, filename: str, choice: ReadChoice) -> FileLayout:
    return layout_for(fmt) if fmt else sniff_file(path, filename, choice)


def _check(path: Path, options: CheckOptions, workdir: Path, detected: dict[str, Any]) -> CheckResult:
    layout = _layout(path, options.fmt, options.filename, options.choice)
    detected.update(layout.as_dict())
    stream = read_batches(path, layout, workdir)
    _record_warnings(stream, detected)
    try:
        shape = detect_shape(stream.columns, options.task, options.mapping)
    except LayercakeError as problem:  # keep the columns: the mapping step offers them
        return CheckResult(ok=False, error=problem.message, errors=list(problem.details), columns=stream.columns)
    validation_stream, validation_shape = None, shape
    if options.validation_path is not None:
        validation_dir = workdir / "validation-source"
        validation_dir.mkdir(exist_ok=True)
        # The format choice is the training file's; a delimiter or header choice holds for both files.
        validation_layout = _layout(
            options.validation_path, options.validation_fmt, options.validation_filename,
            replace(options.choice, fmt=""),
        )
        detected["validation"] = validation_layout.as_dict()
        validation_stream = read_batches(options.validation_path, validation_layout, validation_dir)
        _record_warnings(validation_stream, detected["validation"])
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
    normalized: dict[str, Path] = {}
    try:
        try:
            fraction = 0.0 if validation_stream is not None else options.validation_fraction
            _consume(stream, shape, builder, writer, log, fraction, fixed_split=None)
            if validation_stream is not None:
                validation_log = ErrorLog()
                try:
                    _consume(validation_stream, validation_shape, builder, writer, validation_log, 0.0, fixed_split="validation")
                except ShapeMismatch as problem:
                    raise ShapeMismatch(
                        f"In the validation file: {problem.message}",
                        details=[RowError(e.row, e.field, f"in the validation file: {e.message}") for e in problem.details],
                    ) from None
                for error in validation_log.listed:
                    log.add(RowError(error.row, error.field, f"in the validation file: {error.message}"))
                log.total += validation_log.total - len(validation_log.listed)
        finally:
            normalized = writer.close()
    except LayercakeError as problem:  # a mapping that does not fit: keep the columns, the mapping step needs them
        for file in normalized.values():
            file.unlink(missing_ok=True)
        return CheckResult(
            ok=False, error=problem.message, errors=list(problem.details), error_count=len(problem.details),
            shape=shape.name, task=shape.task, columns=stream.columns,
        )

    notes = stream.notes + (validation_stream.notes if validation_stream else []) + conversion_notes(shape)
    profile = builder.result()
    profile["notes"] = notes
    profile["warnings"].extend(_warning_summaries(detected))
    rows = profile["rows"]
    if rows == 0 and not log.total:
        return CheckResult(ok=False, error="The file holds no rows (only a header, or nothing).", shape=shape.name, columns=stream.columns)
    if not log.total:
        for whole_file in builder.file_errors():
            log.add(whole_file)
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


def _record_warnings(stream: BatchStream, detected: dict[str, Any]) -> None:
    detected["warnings"] = [warning.as_dict() for warning in stream.warnings]
    detected["warning_count"] = stream.warning_count


def _warning_summaries(detected: dict[str, Any]) -> list[str]:
    """One line per file with rows read as written despite odd quoting, so the profile never hides them."""
    lines = []
    for where, found in (("", detected), ("in the validation file ", detected.get("validation") or {})):
        count = int(found.get("warning_count") or 0)
        if not count:
            continue
        rows = [str(item["row"]) for item in found.get("warnings", []) if item.get("row") is not None][:10]
        listed = f": rows {', '.join(rows)}{', …' if count > len(rows) else ''}" if rows else ""
        lines.append(
            f"{count:,} row{'s' if count != 1 else ''} {where}with odd quoting {'were' if count != 1 else 'was'} read "
            f"as written, one row per line{listed} (see “How the file was read”)."
        )
    return lines


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
        try:
            batch = canonicalize(item.batch, shape, item.first_row)
        except ShapeMismatch as problem:
            misfits = column_misfits(item.batch, shape.column_of, CANONICAL_SCHEMAS[shape.name], item.first_row)
            raise ShapeMismatch(problem.message, details=problem.details or misfits) from None
        check_batch(batch, shape.name, item.first_row, log)
        keys = profiling.row_keys(batch)
        exact = profiling.fingerprints(keys)
        if fixed_split:
            builder.add(batch, keys, exact, None, split=fixed_split, first_row=item.first_row)
            if not log.total:
                writer.write(fixed_split, batch)
            continue
        to_validation = (exact % SPLIT_BUCKETS) < int(round(fraction * SPLIT_BUCKETS)) if fraction else None
        builder.add(batch, keys, exact, to_validation, first_row=item.first_row)
        if log.total:  # once a row is bad the copy is thrown away: stop writing it
            continue
        if to_validation is None:
            writer.write("train", batch)
        else:
            writer.write("train", batch.filter(pa.array(~to_validation)))
            writer.write("validation", batch.filter(pa.array(to_validation)))
    if stream.row_error_count:
        log.extend(stream.row_errors, stream.row_error_count)
