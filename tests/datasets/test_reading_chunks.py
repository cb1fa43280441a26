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


def test_unclosed_quote_in_a_large_csv_stays_on_its_line_with_a_warning(tiny_chunks, tmp_path):
    # Issue 13: an RFC 4180 reader swallows every following line into the quoted field; real exports mean
    # a literal quote, so the row keeps its quote and the next 2,000 rows stay rows.
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"never closed,a\n' + "more,b\n" * 2000)
    stream, rows, _ = rows_of(path, "csv", tmp_path)
    assert len(rows) == 2001
    assert rows[0] == {"text": '"never closed', "label": "a"} and rows[-1] == {"text": "more", "label": "b"}
    assert [warning.row for warning in stream.warnings] == [1]


def test_blank_lines_only_jsonl_holds_no_rows(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_text("\n \n\n")
    with pytest.raises(DatasetUnreadable, match="holds no rows"):
        read_batches(path, "jsonl", tmp_path)


@pytest.fixture
def tiny_json_pieces(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(reading, "JSON_PIECE_CHARS", 50)
    monkeypatch.setattr(reading, "JSON_BATCH_ROWS", 7)


def test_json_array_is_decoded_object_by_object_across_pieces(tiny_json_pieces, tmp_path):
    rows = [{"text": f"row {i} with a [bracket] and a, comma", "label": "ab"[i % 2]} for i in range(1, 31)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows, indent=2))
    stream, seen, first_rows = rows_of(path, "json", tmp_path)
    assert seen == rows
    assert first_rows == [1, 8, 15, 22, 29]


def test_json_array_error_names_the_row_even_in_a_later_piece(tiny_json_pieces, tmp_path):
    text = json.dumps([{"text": f"row {i}"} for i in range(1, 20)])
    path = tmp_path / "data.json"
    path.write_text(text.replace('{"text": "row 17"}', '{"text": row 17}'))
    with pytest.raises(DatasetUnreadable, match="^Row 17 is not valid JSON"):
        rows_of(path, "json", tmp_path)


@pytest.mark.django_db
def test_a_column_absent_from_a_later_piece_is_missing_in_those_rows(tiny_json_pieces, alice):
    from tests.datasets.conftest import ingest_and_check

    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(1, 8)] + [{"instruction": "q8"}]
    dataset = ingest_and_check(alice, "data.json", json.dumps(rows))
    assert dataset.errors == [{"row": 8, "field": "output", "message": "`output` is missing"}]
