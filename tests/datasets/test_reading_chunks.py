"""Files are parsed in chunks of whole rows (bounded memory): rows, quotes and row numbers survive the cuts."""

from __future__ import annotations

import json

import pytest

from webapp.datasets import reading
from webapp.datasets.reading import DatasetUnreadable, read_batches


@pytest.fixture
def tiny_chunks(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(reading, "CHUNK_BYTES", 64)
    monkeypatch.setattr(reading, "MAX_PENDING_BYTES", 4096)


def rows_of(path, fmt, workdir):  # type: ignore[no-untyped-def]
    stream = read_batches(path, fmt, workdir)
    batches = list(stream.batches)
    return stream, [row for item in batches for row in item.batch.to_pylist()], [item.first_row for item in batches]


def test_csv_quoted_line_breaks_survive_chunk_cuts(tiny_chunks, tmp_path):
    records = [(f"line one {i}\nline two, with comma\n\"quoted\"", f"label{i % 2}") for i in range(40)]
    text = "text,label\n" + "".join('"' + body.replace('"', '""') + f'",{label}\n' for body, label in records)
    path = tmp_path / "data.csv"
    path.write_text(text)
    stream, rows, first_rows = rows_of(path, "csv", tmp_path)
    assert stream.columns == ["text", "label"]
    assert [(row["text"], row["label"]) for row in rows] == records
    assert len(first_rows) > 1 and first_rows[0] == 1


def test_jsonl_rows_are_numbered_across_chunks(tiny_chunks, tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": f"row number {i}"}) + "\n" for i in range(1, 101)))
    stream = read_batches(path, "jsonl", tmp_path)
    seen, batches = 0, 0
    for item in stream.batches:
        assert item.first_row == seen + 1
        assert item.batch.column("text")[0].as_py() == f"row number {seen + 1}"
        seen += item.batch.num_rows
        batches += 1
    assert (seen, batches > 1) == (100, True)


def test_jsonl_error_in_a_later_chunk_names_its_row(tiny_chunks, tmp_path):
    lines = [json.dumps({"text": f"row {i}"}) for i in range(1, 60)]
    lines[46] = '{"text": broken}'
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetUnreadable) as problem:
        _, _, _ = rows_of(path, "jsonl", tmp_path)
    assert problem.value.message.startswith("Row 47 is not valid JSONL")


def test_unclosed_quote_in_a_large_csv_is_refused_not_buffered(tiny_chunks, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"never closed,a\n' + "more,b\n" * 2000)
    with pytest.raises(DatasetUnreadable) as problem:
        rows_of(path, "csv", tmp_path)
    assert "a quote is never closed" in problem.value.message


def test_blank_lines_only_jsonl_holds_no_rows(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n \n\n")
    with pytest.raises(DatasetUnreadable, match="holds no rows"):
        read_batches(path, "jsonl", tmp_path)
