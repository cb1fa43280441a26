"""How a dataset file is laid out (format, delimiter, header row), sniffed from its content (no Django).

The extension is a hint and the content decides. A TSV named .csv, the same TSV named .txt and a file
with no extension are all read as what they hold. The person can override each guess with a `ReadChoice`.
The same function runs at upload (binary junk is refused before a byte is stored) and in the check, so
the two always agree.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webapp.lib.errors import LayercakeError

FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "txt")
FORMAT_LABELS = {
    "csv": "CSV",
    "tsv": "TSV",
    "json": "JSON (a list of objects)",
    "jsonl": "JSON Lines",
    "parquet": "Parquet",
    "txt": "plain text",
}
FORMAT_BY_EXTENSION = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".txt": "txt",
    ".text": "txt",
}
# Files we know are not datasets in a readable form: refused by name with what to do instead. Any
# other name (none, .dat, .data, .log...) is read by its content.
REFUSED_EXTENSIONS = {
    **dict.fromkeys((".xlsx", ".xls", ".xlsm", ".ods"), "a spreadsheet: save the sheet as CSV (UTF-8) and upload that"),
    **dict.fromkeys((".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".zst"), "an archive: unpack it and upload the data file"),
    **dict.fromkeys(
        (".pkl", ".pickle", ".pt", ".pth", ".bin", ".safetensors", ".gguf", ".npy", ".npz", ".h5", ".onnx", ".arrow", ".feather"),
        "binary data: export it as CSV, JSONL or Parquet",
    ),
    **dict.fromkeys((".exe", ".dll", ".so", ".dylib", ".class", ".jar", ".sh", ".bat", ".cmd", ".ps1"), "a program, not data"),
    **dict.fromkeys((".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".pdf", ".doc", ".docx", ".mp3", ".wav", ".mp4"), "not tabular text"),
}
DELIMITERS = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|"}
DELIMITER_NAMES = {char: name for name, char in DELIMITERS.items()}
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 200
PARQUET_MAGIC = b"PAR1"
# Column names that make a first row a header whatever else it looks like.
KNOWN_COLUMN_NAMES = frozenset(
    {
        "text", "label", "instruction", "input", "output", "messages", "conversations", "system", "tokens",
        "tags", "source", "target", "prompt", "response", "completion", "chosen", "rejected", "question",
        "answer", "context", "id", "sentence", "category", "class", "title", "body", "content", "labels",
    }
)
# A field in double quotes, quotes inside doubled (RFC 4180); possessive so a never-closed quote fails fast.
_QUOTED = re.compile(r'"((?:[^"]++|"")*+)"')
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class DatasetUnreadable(LayercakeError):
    """The file cannot be read as a table: wrong format, broken syntax, wrong encoding."""


@dataclass(frozen=True)
class ReadChoice:
    """What the person asked for; empty (or None) means "detect it"."""

    fmt: str = ""
    delimiter: str = ""  # the character itself
    header: bool | None = None

    @classmethod
    def from_dict(cls, stored: dict[str, Any] | None) -> ReadChoice:
        stored = stored or {}
        header = stored.get("header")
        return cls(
            fmt=str(stored.get("format") or ""),
            delimiter=DELIMITERS.get(str(stored.get("delimiter") or ""), ""),
            header=header if isinstance(header, bool) else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """For storage and the API: delimiters by name (a tab is invisible in a form or a JSON body)."""
        chosen: dict[str, Any] = {}
        if self.fmt:
            chosen["format"] = self.fmt
        if self.delimiter:
            chosen["delimiter"] = DELIMITER_NAMES[self.delimiter]
        if self.header is not None:
            chosen["header"] = self.header
        return chosen


def check_choice(fmt: str = "", delimiter: str = "", header: Any = None) -> ReadChoice:
    """A ReadChoice from form or API values (delimiter by name), or a LayercakeError saying what is allowed."""
    if fmt and fmt not in FORMATS:
        raise LayercakeError(f"Unknown format `{fmt[:20]}`: choose one of {', '.join(FORMATS)}.")
    if delimiter and delimiter not in DELIMITERS:
        raise LayercakeError(f"Unknown delimiter `{delimiter[:20]}`: choose one of {', '.join(DELIMITERS)}.")
    if delimiter and fmt and fmt not in ("csv", "tsv"):
        raise LayercakeError(f"A delimiter applies to CSV or TSV files, not to {FORMAT_LABELS[fmt]}.")
    return ReadChoice(fmt, DELIMITERS.get(delimiter, ""), header if isinstance(header, bool) else None)


@dataclass(frozen=True)
class FileLayout:
    """How a file is read, and why: what was detected and what the person chose."""

    fmt: str
    delimiter: str = ""
    header: bool = True
    column_names: tuple[str, ...] = ()  # for a delimited file without a header row
    notes: tuple[str, ...] = field(default=())

    @property
    def delimited(self) -> bool:
        return self.fmt in ("csv", "tsv")

    def describe(self) -> str:
        if not self.delimited:
            return FORMAT_LABELS[self.fmt]
        kind = "TSV" if self.delimiter == "\t" else "CSV"
        separated = f"{DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))}-separated"
        return f"{kind} ({separated}), {'with a header row' if self.header else 'no header row'}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.fmt,
            "delimiter": DELIMITER_NAMES.get(self.delimiter, "") if self.delimited else "",
            "header": self.header if self.delimited else None,
            "summary": self.describe(),
            "notes": list(self.notes),
        }


def extension(filename: str) -> str:
    """The lower-case extension of a client's file name; the name is only a label, never a path."""
    return Path((filename or "").replace("\\", "/")).suffix.lower()[:20]


def refuse_by_name(filename: str) -> None:
    suffix = extension(filename)
    if suffix in REFUSED_EXTENSIONS:
        raise DatasetUnreadable(
            f"Unsupported file type {suffix} ({REFUSED_EXTENSIONS[suffix]}): upload CSV, TSV, JSON, JSONL, Parquet or plain text."
        )


def decode_head(head: bytes, complete: bool) -> str:
    """The text of a file's first bytes, or DatasetUnreadable when it is binary or not UTF-8 / UTF-16 with a BOM."""
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return codecs.getincrementaldecoder(encoding)(errors="replace").decode(head[len(bom) :], final=complete)
    if b"\x00" in head:
        raise DatasetUnreadable(
            "The file holds binary data, not text: upload CSV, TSV, JSON, JSONL, Parquet or plain text in UTF-8."
        )
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError as exc:
        raise DatasetUnreadable(
            f"The file is not UTF-8 text (byte 0x{head[exc.start]:02X} at offset {exc.start}): "
            "save it as UTF-8 and upload it again."
        ) from None
    return text.removeprefix("\ufeff")


def split_line(line: str, delimiter: str) -> tuple[list[str], str]:
    """The fields of one line by the rules real exports follow, and what was odd about its quoting.

    A field is quoted only when it starts with `"` and its closing quote ends it (before the delimiter or
    the end of the line); a `"` anywhere else is a literal character. The second value is "" when the
    quoting is clean, "open" when a field starts a quote that this line never closes, "stray" when a
    quoted part is followed by more text. Odd fields are kept as written, quotes included.
    """
    if '"' not in line:
        return line.split(delimiter), ""
    fields: list[str] = []
    issue = ""
    at, end_of_line = 0, len(line)
    while True:
        if line.startswith('"', at):
            found = _QUOTED.match(line, at)
            if found and (found.end() == end_of_line or line.startswith(delimiter, found.end())):
                fields.append(found.group(1).replace('""', '"'))
                at = found.end()
            else:
                issue = issue or ("stray" if found else "open")
                end = line.find(delimiter, at)
                end = end_of_line if end < 0 else end
                fields.append(line[at:end])
                at = end
        else:
            end = line.find(delimiter, at)
            end = end_of_line if end < 0 else end
            fields.append(line[at:end])
            at = end
        if at >= end_of_line:
            return fields, issue
        at += len(delimiter)


def _sample_lines(text: str, complete: bool) -> list[str]:
    lines = text.splitlines()
    if not complete and lines and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # cut by the sniffing window
    return [line for line in lines if line.strip()][:SNIFF_LINES]


def sniff_delimiter(lines: list[str], preferred: str = "", strict: bool = False) -> str:
    """The delimiter that splits the sample's lines into the same number (2 or more) of fields, or ""."""
    if len(lines) < (2 if strict else 1):
        return ""
    scores: dict[str, float] = {}
    for candidate in DELIMITERS.values():
        widths = [len(split_line(line, candidate)[0]) for line in lines]
        width, seen = Counter(widths).most_common(1)[0]
        # The first line (header or first row) sets the width: a delimiter that splits it otherwise is not it.
        if width >= 2 and widths[0] == width:
            scores[candidate] = seen / len(lines)
    needed = 1.0 if strict else 0.75
    fitting = {candidate: score for candidate, score in scores.items() if score >= needed}
    if not fitting:
        return ""
    order = [preferred, "\t", ",", ";", "|"]
    return max(fitting, key=lambda candidate: (fitting[candidate], -order.index(candidate)))


def _is_number(value: str) -> bool:
    return bool(_NUMBER.match(value.strip()))


def sniff_header(lines: list[str], delimiter: str) -> bool:
    """Whether the first line names the columns: known names, or a first row unlike the rest of its columns."""
    rows = [split_line(line, delimiter)[0] for line in lines]
    first, rest = rows[0], [row for row in rows[1:] if len(row) == len(rows[0])]
    if any(cell.strip().lower() in KNOWN_COLUMN_NAMES for cell in first):
        return True
    if not rest:
        return True
    votes = 0
    for index, cell in enumerate(first):
        values = [row[index] for row in rest]
        numeric = sum(_is_number(value) for value in values) / len(values)
        if numeric >= 0.9:
            votes += -1 if _is_number(cell) else 1
            continue
        distinct = set(values)
        if len(values) >= 4 and len(distinct) <= max(2, len(values) // 4):  # a label-like column
            votes += -1 if cell in distinct else 1
    # No evidence either way: a header, as most exports write one.
    return votes >= 0


def headerless_names(lines: list[str], delimiter: str, width: int) -> tuple[tuple[str, ...], str]:
    """Column names for a file without a header: `label` and `text` when two columns plainly are that
    (one with a few short values, one with longer text), else column_1, column_2..."""
    rows = [fields for fields in (split_line(line, delimiter)[0] for line in lines) if len(fields) == width]
    generic = tuple(f"column_{index}" for index in range(1, width + 1))
    if width != 2 or len(rows) < 4:
        return generic, ""
    columns = [[row[index] for row in rows] for index in range(2)]
    distinct = [len(set(values)) for values in columns]
    lengths = [sorted(len(value) for value in values)[len(values) // 2] for values in columns]
    for label_at in (0, 1):
        text_at = 1 - label_at
        few = distinct[label_at] <= max(2, len(rows) // 4) and lengths[label_at] <= 20
        if few and distinct[text_at] > distinct[label_at] and lengths[text_at] > lengths[label_at]:
            names = ["", ""]
            names[label_at], names[text_at] = "label", "text"
            return tuple(names), (
                f"Columns named `{names[0]}` and `{names[1]}` by their content (column {label_at + 1} holds a few "
                "short values): map them otherwise under Column mapping if that is wrong."
            )
    return generic, ""


def _json_kind(text: str, lines: list[str], suffix_format: str) -> str:
    """"json", "jsonl" or "" from the first characters of a text."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        after = stripped[1:].lstrip()
        if after[:1] in ("{", "]") or suffix_format in ("json", "jsonl"):
            return "json"
        return ""
    if not stripped.startswith("{"):
        return ""
    try:
        first = json.loads(lines[0]) if lines else None
    except ValueError:
        first = None
    if isinstance(first, dict) and (len(lines) > 1 or suffix_format != "json"):
        return "jsonl"
    return "json" if suffix_format != "jsonl" else "jsonl"


def sniff_layout(head: bytes, filename: str, choice: ReadChoice | None = None, complete: bool = False) -> FileLayout:
    """How to read a file from its first bytes (`complete` when that is the whole file), its name and the
    person's choice. Raises DatasetUnreadable for binary or non-UTF-8 content and refused file types."""
    choice = choice or ReadChoice()
    refuse_by_name(filename)
    suffix = extension(filename)
    by_name = FORMAT_BY_EXTENSION.get(suffix, "")
    named = f"the name ends in {suffix}" if suffix else "the name has no extension"
    notes: list[str] = []
    if choice.fmt == "parquet" or (not choice.fmt and (head.startswith(PARQUET_MAGIC) or by_name == "parquet")):
        if by_name != "parquet" and not choice.fmt:
            notes.append(f"Read as Parquet from its content ({named}).")
        return FileLayout("parquet", notes=tuple(notes))
    text = decode_head(head, complete)
    lines = _sample_lines(text, complete)
    fmt = choice.fmt
    if fmt:
        notes.append(f"Read as {FORMAT_LABELS[fmt]}, as you chose.")
    else:
        fmt = _json_kind(text, lines, by_name)
        if not fmt and by_name in ("json", "jsonl") and text.strip():
            fmt = by_name  # not JSON at all: the reader says what is wrong with it
        if not fmt:
            preferred = "\t" if by_name == "tsv" else "," if by_name == "csv" else ""
            found = sniff_delimiter(lines, preferred, strict=by_name not in ("csv", "tsv"))
            if found:
                fmt = "tsv" if found == "\t" else "csv"
            else:
                fmt = by_name if by_name in ("csv", "tsv") else "txt"
        if by_name and fmt != by_name:
            notes.append(f"Read as {FORMAT_LABELS[fmt]} from its content, although {named}.")
        elif not by_name:
            notes.append(f"Read as {FORMAT_LABELS[fmt]} from its content ({named}).")
    if fmt not in ("csv", "tsv"):
        return FileLayout(fmt, notes=tuple(notes))

    delimiter = choice.delimiter
    if fmt == "tsv" and not delimiter:
        delimiter = "\t"
    if not delimiter:
        delimiter = sniff_delimiter(lines, "," if by_name != "tsv" else "\t") or ("\t" if by_name == "tsv" else ",")
    fmt = "tsv" if delimiter == "\t" else "csv"  # a chosen delimiter wins over the format's usual one
    if choice.header is not None:
        header = choice.header
    else:
        header = sniff_header(lines, delimiter) if lines else True
        if not header:
            notes.append("The first row looks like data, not column names: it is read as a row.")
    names: tuple[str, ...] = ()
    if not header:
        width = len(split_line(lines[0], delimiter)[0]) if lines else 1
        names, named_by_content = headerless_names(lines, delimiter, width)
        if named_by_content:
            notes.append(named_by_content)
    return FileLayout(fmt, delimiter, header, names, tuple(notes))


def sniff_file(path: Path, filename: str, choice: ReadChoice | None = None) -> FileLayout:
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        complete = not handle.read(1)
    if not head:
        raise DatasetUnreadable("The file is empty.")
    return sniff_layout(head, filename, choice, complete)


def layout_for(fmt: str) -> FileLayout:
    """The layout a format name alone implies: the old, name-only way (kept for callers that know the format)."""
    if fmt not in FORMATS:
        raise DatasetUnreadable(f"Unknown format {fmt!r}.")
    return FileLayout(fmt, "\t" if fmt == "tsv" else "," if fmt == "csv" else "")
