"""Reads an uploaded file as a stream of Arrow record batches, whatever its format (no Django here)."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from webapp.datasets.layout import DatasetUnreadable, FileLayout, layout_for, split_line
from webapp.lib.errors import RowError

T = TypeVar("T")
MAX_COLUMNS = 1000
# A JSON array is decoded object by object from pieces of this many characters.
JSON_PIECE_CHARS = 8 * 1024 * 1024
JSON_BATCH_ROWS = 5_000
_NOT_SPACE = re.compile(r"\S")
_JSON_KINDS = {int: "a number", float: "a number", str: "a string", list: "a list", bool: "true or false", type(None): "null"}
# Arrow's JSON parser recurses per nesting level and overflows the stack on hostile
# input (a segfault, not an exception), so nesting is checked before Arrow sees a line.
MAX_NESTING = 32
# Arrow's streaming CSV and JSON readers read ahead without bound when the consumer is slower
# (a 1 GB file ends up in memory), so files are cut into chunks of whole rows here and each
# chunk is parsed on its own: memory stays near a few chunks whatever the file size.
CHUNK_BYTES = 32 * 1024 * 1024
# Arrow parses a chunk in blocks on several threads; a row must fit in one block.
BLOCK_BYTES = 8 * 1024 * 1024
JSON_BLOCK_BYTES = 4 * 1024 * 1024
MAX_PENDING_BYTES = 4 * CHUNK_BYTES
BATCH_ROWS = 20_000
SNIFF_BYTES = 64 * 1024
PARQUET_MAGIC = b"PAR1"
# Parquet compresses: a 27 KB file can decode to 600 MB. Its footer states every row group's decoded size,
# so batches are cut to about this many decoded bytes (not a row count), and a file that decodes to more
# than PARQUET_MAX_RATIO times its size (past a floor) or past PARQUET_MAX_DECODED_BYTES is refused unread.
PARQUET_BATCH_BYTES = 32 * 1024 * 1024
PARQUET_MAX_RATIO = 100
PARQUET_RATIO_FLOOR_BYTES = 64 * 1024 * 1024
PARQUET_MAX_DECODED_BYTES = 16 * 1024**3


@dataclass
class RowBatch:
    first_row: int  # 1-based number of the batch's first row in the file
    batch: pa.RecordBatch


@dataclass
class BatchStream:
    """The columns of a file and its rows, read lazily; CSV row problems appear after iteration."""

    columns: list[str]
    batches: Iterator[RowBatch]
    notes: list[str] = field(default_factory=list)
    row_errors: list[RowError] = field(default_factory=list)
    row_error_count: int = 0
    # Rows read as written although something about them was odd (a stray quote): shown, never silent.
    warnings: list[RowError] = field(default_factory=list)
    warning_count: int = 0


def read_batches(path: Path, layout: FileLayout | str, workdir: Path) -> BatchStream:
    """Open `path` as `layout` (or a bare format name); raise DatasetUnreadable with a reason a person can act on."""
    if isinstance(layout, str):
        layout = layout_for(layout)
    fmt = layout.fmt
    if path.stat().st_size == 0:
        raise DatasetUnreadable("The file is empty.")
    if fmt == "parquet":
        return _read_parquet(path)
    path, notes = _as_utf8(path, workdir)
    if layout.delimited:
        stream = _read_delimited(path, layout, workdir)
    elif fmt == "jsonl":
        stream = _read_jsonl(path)
    elif fmt == "json":
        stream = _read_json_array(path)
    else:
        stream = _read_text(path)
    stream.notes[:0] = notes
    return stream


def _as_utf8(path: Path, workdir: Path) -> tuple[Path, list[str]]:
    """UTF-8 (with or without BOM) is read as is; UTF-16 with a BOM is transcoded; the rest is refused."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return _transcode(path, workdir, encoding), [f"Transcoded from {encoding.upper()} to UTF-8."]
    if head.startswith(PARQUET_MAGIC):
        raise DatasetUnreadable("This is a Parquet file: give it the .parquet extension.")
    if b"\x00" in head:
        raise DatasetUnreadable(
            "The file holds binary data, not text: upload CSV, TSV, JSON, JSONL or plain text in UTF-8."
        )
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=len(head) < SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise DatasetUnreadable(
            f"The file is not UTF-8 text (byte 0x{head[exc.start]:02X} at offset {exc.start}): "
            "save it as UTF-8 and upload it again."
        ) from None
    return path, []


def _transcode(path: Path, workdir: Path, encoding: str) -> Path:
    target = workdir / "transcoded-utf8"
    try:
        with path.open("r", encoding="utf-16") as source, target.open("w", encoding="utf-8") as sink:
            while chunk := source.read(1024 * 1024):
                sink.write(chunk)
    except UnicodeError:
        raise DatasetUnreadable(
            f"The file starts like {encoding.upper()} text but holds invalid characters: save it as UTF-8."
        ) from None
    return target


def _arrow_message(exc: Exception, block_bytes: int = BLOCK_BYTES) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "invalid utf8" in text.lower():
        return "the file is not valid UTF-8 text; save it as UTF-8 and upload it again"
    if "straddling" in text.lower() or "block size" in text.lower():
        return f"a row is larger than {block_bytes // (1024 * 1024)} MB"
    return text[:300]


def _check_columns(columns: list[str]) -> None:
    if len(columns) > MAX_COLUMNS:
        raise DatasetUnreadable(
            f"The file has {len(columns):,} columns; the limit is {MAX_COLUMNS:,}: keep only the columns you train on."
        )
    seen: dict[str, str] = {}
    for index, name in enumerate(columns, start=1):
        if not str(name).strip():
            raise DatasetUnreadable(f"Column {index} has no name: give every column a header.")
        key = str(name).strip().lower()
        if key in seen:
            raise DatasetUnreadable(
                f"Duplicate column name `{name}` (column names are compared without case): rename one of them."
            )
        seen[key] = name


# Parquet


def _read_parquet(path: Path) -> BatchStream:
    with path.open("rb") as handle:
        head = handle.read(4)
        handle.seek(-4, 2)
        tail = handle.read(4)
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        raise DatasetUnreadable("The file is not a complete Parquet file (it may be truncated or another format).")
    try:
        # Streamed column chunks: a file written as one huge row group is not read into memory at once.
        parquet = pq.ParquetFile(path, buffer_size=BLOCK_BYTES, pre_buffer=False)
        columns = list(parquet.schema_arrow.names)
    except Exception as exc:  # pyarrow raises several types for corrupt footers
        raise DatasetUnreadable(f"The Parquet file cannot be read: {_arrow_message(exc)}.") from None
    _check_columns(columns)
    file_bytes = path.stat().st_size
    try:
        batch_rows = _parquet_batch_rows(parquet, file_bytes)
    except (pa.ArrowException, OSError) as exc:
        raise DatasetUnreadable(f"The Parquet file cannot be read: {_arrow_message(exc)}.") from None

    def batches() -> Iterator[RowBatch]:
        row = 1
        try:
            decoded = 0
            for batch in parquet.iter_batches(batch_size=batch_rows):
                decoded += batch.nbytes  # later rows may be wider than the first ones
                bomb = _parquet_bomb(decoded, file_bytes)
                if bomb is not None:
                    raise bomb
                yield RowBatch(row, batch)
                row += batch.num_rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DatasetUnreadable(f"The Parquet file is damaged near row {row}: {_arrow_message(exc)}.") from None

    return BatchStream(columns, batches())


def _parquet_bomb(decoded: float, file_bytes: int) -> DatasetUnreadable | None:
    if decoded > PARQUET_MAX_DECODED_BYTES or (
        decoded > PARQUET_RATIO_FLOOR_BYTES and decoded > PARQUET_MAX_RATIO * max(file_bytes, 1)
    ):
        return DatasetUnreadable(
            f"The Parquet file decodes to at least {decoded / 2**20:,.0f} MB from {file_bytes / 2**20:,.2f} MB "
            f"({int(decoded) // max(file_bytes, 1):,} times its size): that is a decompression bomb, not a dataset. "
            "Export it again without such repetitive values."
        )
    return None


def _parquet_batch_rows(parquet: pq.ParquetFile, file_bytes: int) -> int:
    """Rows per batch so that a batch decodes to about PARQUET_BATCH_BYTES; refuses decompression bombs.

    The footer's sizes are of the encoded pages: a dictionary-encoded column of one repeated 1 MB string
    states 1 MB for 600 rows. So the first rows are decoded too, and the larger of the two row sizes wins.
    """
    metadata = parquet.metadata
    widest_row = 1.0
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if group.num_rows:
            group_bytes = sum(group.column(c).total_uncompressed_size for c in range(group.num_columns))
            widest_row = max(widest_row, group_bytes / group.num_rows)
    probe = next(parquet.iter_batches(batch_size=16), None)
    if probe is not None and probe.num_rows:
        widest_row = max(widest_row, probe.nbytes / probe.num_rows)
    bomb = _parquet_bomb(widest_row * metadata.num_rows, file_bytes)
    if bomb is not None:
        raise bomb
    return int(max(1, min(BATCH_ROWS, PARQUET_BATCH_BYTES // widest_row)))


# CSV and TSV


_DONE = object()


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Produce the next items in a thread while the caller works on this one (Arrow parsing frees
    the GIL, so reading overlaps checking); at most `depth` items wait, so memory stays bounded."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            offer(exc)

    worker = threading.Thread(target=produce, name="dataset-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)


def _row_end(buffer: bytes, quote_aware: bool, quotes_before: int = 0) -> int:
    """Index of the last newline that ends a row (outside double quotes when quote_aware), or -1;
    `quotes_before` counts the quotes of the row's bytes that precede `buffer`."""
    index = buffer.rfind(b"\n")
    if not quote_aware:
        return index
    # RFC 4180 doubles quotes inside quoted fields, so an even count of quotes before a newline
    # means the newline is outside any field.
    before = quotes_before + (buffer.count(b'"', 0, index) if index >= 0 else 0)
    while index >= 0 and before % 2:
        previous = buffer.rfind(b"\n", 0, index)
        before -= buffer.count(b'"', previous + 1 if previous >= 0 else 0, index)
        index = previous
    return index


def _chunks(handle: BinaryIO, quote_aware: bool) -> Iterator[bytes]:
    """The file's bytes in pieces of whole rows, about CHUNK_BYTES each (one copy per piece)."""
    carry = b""
    while True:
        data = handle.read(CHUNK_BYTES)
        if not data:
            if carry and not carry.isspace():
                yield carry
            return
        cut = _row_end(data, quote_aware, carry.count(b'"') if quote_aware else 0)
        if cut < 0:
            carry += data
            if len(carry) > MAX_PENDING_BYTES:
                raise DatasetUnreadable(
                    f"A row is longer than {MAX_PENDING_BYTES // (1024 * 1024)} MB, or a quote is never closed."
                )
            continue
        piece = carry + data[: cut + 1] if carry else data[: cut + 1]
        if not piece.isspace():
            yield piece
        carry = data[cut + 1 :]


def _read_delimited(path: Path, layout: FileLayout, workdir: Path) -> BatchStream:
    delimiter = layout.delimiter
    kind = "TSV" if delimiter == "\t" else "CSV"
    # Stray quotes would make Arrow's RFC 4180 reader swallow the following lines into one field: such
    # files are first rewritten with proper quoting, one record per line, and the odd rows reported.
    repair = repair_quoting(path, delimiter, layout.header, workdir)
    path = repair.path
    with path.open("rb") as handle:
        head = handle.read(CHUNK_BYTES)
    header_end = _first_row_end(head)
    first_row = head[: header_end + 1] if header_end >= 0 else head
    if not first_row.strip(b"\xef\xbb\xbf \t\r\n"):
        raise DatasetUnreadable(f"The {kind} file has no header row." if layout.header else f"The {kind} file holds no rows.")
    read_options = pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True, autogenerate_column_names=not layout.header)
    try:
        first_names = list(
            pa_csv.read_csv(pa.BufferReader(first_row), read_options=read_options, parse_options=pa_csv.ParseOptions(delimiter=delimiter)).schema.names
        )
    except (pa.ArrowException, OSError) as exc:
        raise DatasetUnreadable(f"The {kind} {'header' if layout.header else 'first row'} cannot be read: {_arrow_message(exc)}.") from None
    if layout.header:
        columns, header = first_names, first_row
    else:
        width = len(first_names)
        columns = list(layout.column_names) if len(layout.column_names) == width else [f"column_{i}" for i in range(1, width + 1)]
        header = b""
        read_options = pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True, column_names=columns)
    _check_columns(columns)
    stream = BatchStream(columns, iter(()), warnings=repair.warnings, warning_count=repair.warning_count)
    invalid_rows = [0]

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        invalid_rows[0] += 1
        return "skip"

    parse_options = pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid_row)
    # Every cell is read as text: "007" stays "007", "=SUM(A1)" stays a string, "NA" is not null.
    convert_options = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in columns}, strings_can_be_null=False
    )

    def tables() -> Iterator[pa.Table]:
        rows = 0
        with path.open("rb") as handle:
            handle.seek(len(header))
            for chunk in _chunks(handle, quote_aware=True):
                try:
                    table = pa_csv.read_csv(
                        pa.BufferReader(header + chunk),
                        read_options=read_options,
                        parse_options=parse_options,
                        convert_options=convert_options,
                    )
                except (pa.ArrowException, OSError) as exc:
                    raise DatasetUnreadable(
                        f"The {kind} file cannot be read after row {rows}: {_arrow_message(exc)}."
                    ) from None
                rows += table.num_rows
                yield table

    def batches() -> Iterator[RowBatch]:
        row = 1
        for table in prefetched(tables()):
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                yield RowBatch(row, batch)
                row += batch.num_rows
        if invalid_rows[0]:
            stream.row_errors, stream.row_error_count = _ragged_rows(path, delimiter, len(columns), layout.header)

    stream.batches = batches()
    return stream


# Quoting as real exports write it


# A field whose quotes span lines is only believed within this many lines / characters.
MAX_QUOTED_LINES = 1_000
MAX_QUOTED_CHARS = 1024 * 1024
LISTED_WARNINGS = 50
_OPEN_QUOTE = (
    "starts with a quote that this line never closes: read as written, the quote kept, one row per line "
    "(check that this row and the next ones are what you meant)"
)
_STRAY_QUOTE = "has quoted text followed by more text in one field: the field is read as written, quotes kept"


@dataclass
class QuotingRepair:
    """The file to parse (the original, or a copy with regular quoting) and the rows whose quoting was odd."""

    path: Path
    warnings: list[RowError] = field(default_factory=list)
    warning_count: int = 0


def _has_quote(path: Path) -> bool:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            if b'"' in chunk:
                return True
    return False


def repair_quoting(path: Path, delimiter: str, header: bool, workdir: Path) -> QuotingRepair:
    """Read a delimited file one record per line unless a quoted field plainly spans lines.

    A line whose quote is never closed on it is ambiguous: RFC 4180 readers join the next lines into
    its field (a TSV of SMS lost rows that way). This keeps one record per line when every line of the
    span has the right number of fields as written, and joins the lines only when they do not while the
    joined record does (a real multi-line cell). When the file needs it, a copy with regular quoting is
    written to `workdir`, so Arrow then reads exactly those records.
    """
    if not _has_quote(path):
        return QuotingRepair(path)
    scan = _scan_quoting(path, delimiter, header, None)
    if not scan.rewrite:
        return QuotingRepair(path, scan.warnings, scan.warning_count)
    target = workdir / "requoted.csv"
    with target.open("w", encoding="utf-8", newline="") as sink:
        _scan_quoting(path, delimiter, header, sink)
    return QuotingRepair(target, scan.warnings, scan.warning_count)


@dataclass
class _QuotingScan:
    rewrite: bool = False
    warnings: list[RowError] = field(default_factory=list)
    warning_count: int = 0

    def warn(self, row: int | None, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < LISTED_WARNINGS:
            self.warnings.append(RowError(row, None, message))


def _scan_quoting(path: Path, delimiter: str, header: bool, sink: TextIO | None) -> _QuotingScan:
    scan = _QuotingScan()
    writer = csv.writer(sink, delimiter=delimiter, lineterminator="\n") if sink is not None else None
    width: int | None = None
    records = 0  # records seen, the header included
    pending: list[str] = []  # lines read ahead while trying a quoted field across lines, to read again
    with path.open("r", encoding="utf-8-sig", newline=None) as handle:
        lines = iter(handle)

        def next_line() -> str | None:
            if pending:
                return pending.pop()
            return next(lines, None)

        while (line := next_line()) is not None:
            body = line.rstrip("\n")
            if not body.strip("\r"):
                continue  # blank lines are no records, here as in Arrow
            if '"' not in body:
                records += 1
                width = width or len(body.split(delimiter))
                if writer is not None:
                    sink.write(body + "\n")  # type: ignore[union-attr]
                continue
            fields, issue = split_line(body, delimiter)
            width = width or len(fields)
            row = records + (0 if header else 1) or None  # the header itself has no row number
            if issue == "open":
                span, joined = _quoted_span(body, delimiter, next_line)
                per_line_fits = all(len(split_line(part, delimiter)[0]) == width for part in span if part.strip())
                if joined is not None and len(joined) == width and not per_line_fits:
                    records += 1
                    if writer is not None:
                        writer.writerow(joined)
                    continue
                pending.extend(reversed([part + "\n" for part in span[1:]]))
                scan.rewrite = True
                scan.warn(row, _OPEN_QUOTE)
            elif issue == "stray":
                scan.rewrite = True
                scan.warn(row, _STRAY_QUOTE)
            elif body.count('"') % 2:
                scan.rewrite = True  # a literal quote inside a field: fine here, but it would unbalance RFC readers
            records += 1
            if writer is not None:
                writer.writerow(fields)
    return scan


# From the start of a line inside a quoted field: everything up to the quote that closes it.
_CLOSING_QUOTE = re.compile(r'(?:[^"]++|"")*+"')


def _quoted_span(first: str, delimiter: str, next_line: Any) -> tuple[list[str], list[str] | None]:
    """The lines an RFC 4180 reader would join to close the quote opened on `first`, and the fields of the
    joined record (None when the quote never closes cleanly within the limits). Each line is looked at
    once; the joined text is split once, at the end."""
    span = [first]
    size = len(first)
    while len(span) < MAX_QUOTED_LINES and size < MAX_QUOTED_CHARS:
        line = next_line()
        if line is None:
            break
        part = line.rstrip("\n").rstrip("\r")
        span.append(part)
        size += len(part)
        closing = _CLOSING_QUOTE.match(part)
        if closing is None:
            continue  # still inside the field
        rest = part[closing.end() :]
        if rest and not rest.startswith(delimiter):
            return span, None  # the closing quote is followed by text: not a clean field
        _, issue = split_line(rest[len(delimiter) :], delimiter) if rest else ([], "")
        if issue == "open":
            continue  # another field of the same record opens a quote: read on
        if issue:
            return span, None
        fields, issue = split_line("\n".join(span), delimiter)
        return span, fields if not issue else None
    return span, None


def _first_row_end(head: bytes) -> int:
    """Index of the newline ending the header row (the first one outside double quotes), or -1."""
    quotes, start = 0, 0
    while (index := head.find(b"\n", start)) >= 0:
        quotes += head.count(b'"', start, index)
        if quotes % 2 == 0:
            return index
        start = index + 1
    return -1


def _ragged_rows(path: Path, delimiter: str, width: int, header: bool = True, limit: int = 50) -> tuple[list[RowError], int]:
    """Number the rows Arrow skipped: it reports them without their position, Python's csv counts."""
    csv.field_size_limit(BLOCK_BYTES)
    errors: list[RowError] = []
    count = 0
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        if header:
            next(reader, None)
        row = 0
        try:
            for record in reader:
                row += 1
                if len(record) != width:
                    count += 1
                    if len(errors) < limit:
                        errors.append(
                            RowError(row, None, f"expected {width} fields, found {len(record)} (a stray delimiter or an unclosed quote?)")
                        )
        except csv.Error as exc:
            count += 1
            errors.append(RowError(row + 1, None, f"cannot be parsed: {exc}"))
    if not count:  # Arrow and csv disagree (an unclosed quote at the end, for instance)
        errors, count = [RowError(None, None, "some rows have the wrong number of fields or an unclosed quote")], 1
    return errors, count


# JSONL and JSON


_BRACKETS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_depth(line: bytes) -> int:
    """How deeply brackets nest in one JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(line):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


# Deleting every byte but opening brackets and newlines leaves each line's count of openers.
_ALL_BUT_OPENERS = bytes(byte for byte in range(256) if byte not in b"[{\n")


def _check_nesting(chunk: bytes, first_line: int) -> None:
    """Refuse lines nested deeper than MAX_NESTING. A line with no more than MAX_NESTING opening
    brackets cannot nest deeper, so only the rare line with more is scanned exactly."""
    skeleton = chunk.translate(None, _ALL_BUT_OPENERS)
    if len(skeleton) - skeleton.count(b"\n") <= MAX_NESTING:
        return
    suspects = [index for index, openers in enumerate(skeleton.split(b"\n")) if len(openers) > MAX_NESTING]
    if not suspects:
        return
    lines = chunk.split(b"\n")
    for index in suspects:
        if nesting_depth(lines[index]) > MAX_NESTING:
            row = first_line + index
            raise DatasetUnreadable(
                f"Row {row} nests deeper than {MAX_NESTING} levels: flatten the data.",
                [RowError(row, None, f"nested deeper than {MAX_NESTING} levels")],
            )


_ARROW_ROW = re.compile(r" in row (\d+)")
_TYPE_CHANGE = re.compile(r"Column\(/?([^)]*)\) changed from (\w+) to (\w+)")


def _parse_jsonl_chunks(path: Path) -> Iterator[tuple[int, pa.Table]]:
    read_options = pa_json.ReadOptions(block_size=JSON_BLOCK_BYTES, use_threads=True)
    row, line = 1, 1
    with path.open("rb") as handle:
        for chunk in _chunks(handle, quote_aware=False):
            _check_nesting(chunk, line)
            line += chunk.count(b"\n")
            try:
                table = pa_json.read_json(pa.BufferReader(chunk), read_options=read_options)
            except (pa.ArrowException, OSError) as exc:
                raise _jsonl_error(exc, row) from None
            yield row, table
            row += table.num_rows


def _read_jsonl(path: Path) -> BatchStream:
    tables = prefetched(_parse_jsonl_chunks(path))
    first = next(tables, None)
    if first is None or not first[1].num_columns:
        raise DatasetUnreadable("The JSONL file holds no rows.")
    columns = list(first[1].schema.names)
    _check_columns(columns)

    def batches() -> Iterator[RowBatch]:
        for first_row, table in itertools.chain([first], tables):
            row = first_row
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                yield RowBatch(row, batch)
                row += batch.num_rows

    return BatchStream(columns, batches())


def _jsonl_error(exc: Exception, block_first_row: int) -> DatasetUnreadable:
    message = _arrow_message(exc, JSON_BLOCK_BYTES)
    found = _ARROW_ROW.search(message)
    if found:
        # Arrow counts rows from 0 within the block being parsed.
        row = block_first_row + int(found.group(1))
        reason = _ARROW_ROW.sub("", message).replace("JSON parse error: ", "").rstrip(".")
        changed = _TYPE_CHANGE.search(reason)
        if changed and not changed.group(1):
            reason = f"each row must be a JSON object, this one is {'an' if changed.group(3)[0] in 'aeiou' else 'a'} {changed.group(3)}"
        elif changed:
            reason = f"`{changed.group(1)}` changes from {changed.group(2)} to {changed.group(3)}: give each column one type"
        elif "encoding" in reason.lower():
            reason = f"{reason} (a broken line, a raw line break inside a string, or text that is not UTF-8)"
        return DatasetUnreadable(f"Row {row} is not valid JSONL: {reason}.", [RowError(row, None, reason)])
    if "empty" in message.lower():
        return DatasetUnreadable("The JSONL file holds no rows.")
    return DatasetUnreadable(f"The JSONL file cannot be read near row {block_first_row}: {message}.")


def _json_array_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of a top-level JSON array one at a time, so a big array is never loaded whole."""
    decoder = json.JSONDecoder()
    with path.open("r", encoding="utf-8-sig") as handle:
        buffer = handle.read(JSON_PIECE_CHARS)
        at_end = len(buffer) < JSON_PIECE_CHARS

        def refill(keep_from: int) -> None:
            nonlocal buffer, at_end
            if len(buffer) - keep_from > MAX_PENDING_BYTES:
                raise DatasetUnreadable(f"A row is larger than {MAX_PENDING_BYTES // (1024 * 1024)} MB, or the JSON is broken.")
            more = handle.read(JSON_PIECE_CHARS)
            at_end = len(more) < JSON_PIECE_CHARS
            buffer = buffer[keep_from:] + more

        def next_token(position: int) -> tuple[str, int]:
            while True:
                found = _NOT_SPACE.search(buffer, position)
                if found:
                    return found.group(), found.start()
                if at_end:
                    return "", len(buffer)
                refill(len(buffer))
                position = 0

        token, position = next_token(0)
        if token == "{":
            raise DatasetUnreadable(
                "A JSON dataset must be a list of objects, one per row; this is one object "
                "(if the rows sit under a key, upload that list, or convert the rows to JSONL)."
            )
        if token != "[":
            raise DatasetUnreadable("A JSON dataset must be a list of objects, one per row.")
        position += 1
        row = 0
        while True:
            token, position = next_token(position)
            if token == "]":
                break
            if row:
                if token != ",":
                    raise DatasetUnreadable(f"The JSON list is broken after row {row}: expected `,` or `]`.")
                token, position = next_token(position + 1)
            if not token:
                raise DatasetUnreadable(f"The JSON list ends after row {row} without its closing `]`.")
            while True:
                try:
                    item, end = decoder.raw_decode(buffer, position)
                    break
                except json.JSONDecodeError as exc:
                    if at_end:
                        raise DatasetUnreadable(f"Row {row + 1} is not valid JSON: {exc.msg}.", [RowError(row + 1, None, exc.msg)]) from None
                    refill(position)
                    position = 0
                except RecursionError:
                    raise DatasetUnreadable(f"Row {row + 1} nests too deeply: flatten the data.") from None
            row += 1
            if not isinstance(item, dict):
                kind = _JSON_KINDS.get(type(item), "a value")
                raise DatasetUnreadable(
                    f"Row {row} is {kind}, not an object: a JSON dataset must be a list of objects.",
                    [RowError(row, None, "is not an object")],
                )
            text = buffer[position:end]
            if text.count("[") + text.count("{") > MAX_NESTING and nesting_depth(text.encode()) > MAX_NESTING:
                raise DatasetUnreadable(f"Row {row} nests deeper than {MAX_NESTING} levels: flatten the data.")
            yield row, item
            position = end
        token, _ = next_token(position + 1)
        if token:
            raise DatasetUnreadable("The JSON file goes on after its list ends: upload one list of objects.")


def _json_array_tables(path: Path) -> Iterator[tuple[int, pa.Table]]:
    rows: list[dict[str, Any]] = []
    first_row = 1
    for row, item in _json_array_rows(path):
        rows.append(item)
        if len(rows) >= JSON_BATCH_ROWS:
            yield first_row, _rows_to_table(rows)
            first_row, rows = row + 1, []
    if rows:
        yield first_row, _rows_to_table(rows)


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns: list[str] = list(dict.fromkeys(key for item in rows for key in item))
    _check_columns(columns)
    try:
        return pa.Table.from_pylist(rows, schema=_infer_schema(rows, columns))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise DatasetUnreadable(f"The JSON rows do not have consistent types: {_arrow_message(exc)}.") from None


def _read_json_array(path: Path) -> BatchStream:
    tables = prefetched(_json_array_tables(path))
    first = next(tables, None)
    if first is None:
        raise DatasetUnreadable("The JSON list is empty: it holds no rows.")
    columns = list(first[1].schema.names)

    def batches() -> Iterator[RowBatch]:
        for first_row, table in itertools.chain([first], tables):
            row = first_row
            for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                yield RowBatch(row, batch)
                row += batch.num_rows

    return BatchStream(columns, batches())


def _infer_schema(rows: list[dict[str, object]], columns: list[str]) -> pa.Schema:
    """One type per column from every row's value (Arrow alone looks at the first row's keys only)."""
    fields = []
    for name in columns:
        try:
            kind = pa.array([item.get(name) for item in rows]).type
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise DatasetUnreadable(
                f"Column `{name}` mixes types across rows ({_arrow_message(exc)}): give it one type."
            ) from None
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


# Plain text


def _read_text(path: Path) -> BatchStream:
    """One document per blank-line-separated block; a file without blank lines: one per line."""
    blank_line = re.compile(rb"\n[ \t\r]*\n")
    with path.open("rb") as handle:
        has_blocks = False
        carry = b""
        while chunk := handle.read(BLOCK_BYTES):
            if blank_line.search(carry + chunk):
                has_blocks = True
                break
            carry = chunk[-64:]

    def documents() -> Iterator[str]:
        with path.open("r", encoding="utf-8-sig", newline=None) as handle:
            block: list[str] = []
            for line in handle:
                text = line.rstrip("\n")
                if not has_blocks:
                    if text.strip():
                        yield text
                    continue
                if text.strip():
                    block.append(text)
                elif block:
                    yield "\n".join(block)
                    block = []
            if block:
                yield "\n".join(block)

    def batches() -> Iterator[RowBatch]:
        row = 1
        pending: list[str] = []
        size = 0
        try:
            for document in documents():
                pending.append(document)
                size += len(document)
                if len(pending) >= BATCH_ROWS or size >= BLOCK_BYTES:
                    yield RowBatch(row, pa.RecordBatch.from_pydict({"text": pa.array(pending, pa.string())}))
                    row += len(pending)
                    pending, size = [], 0
        except UnicodeDecodeError:
            raise DatasetUnreadable(
                f"The file is not valid UTF-8 text (near document {row + len(pending)}): save it as UTF-8."
            ) from None
        if pending:
            yield RowBatch(row, pa.RecordBatch.from_pydict({"text": pa.array(pending, pa.string())}))

    note = (
        "Plain text: one document per blank-line-separated block."
        if has_blocks
        else "Plain text: one document per line (the file has no blank lines)."
    )
    return BatchStream(["text"], batches(), notes=[note])
