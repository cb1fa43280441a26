"""Parquet compresses without limit: batches are cut by decoded bytes and decompression bombs are refused."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webapp.datasets import reading
from webapp.datasets.layout import DatasetUnreadable


def write(path: Path, texts: list[str]) -> Path:
    pq.write_table(pa.table({"text": texts}), path, compression="zstd")
    return path


def test_a_small_file_of_huge_repetitive_strings_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "PARQUET_RATIO_FLOOR_BYTES", 1 << 20)
    path = write(tmp_path / "bomb.parquet", ["a" * (64 << 10)] * 200)  # 12.5 MB of text in a few KB
    assert path.stat().st_size < 200_000
    with pytest.raises(DatasetUnreadable, match="decompression bomb"):
        reading._read_parquet(path)


def test_batches_are_cut_by_decoded_bytes_not_by_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "PARQUET_BATCH_BYTES", 1 << 20)
    path = write(tmp_path / "wide.parquet", [f"{i} " + "word " * 20_000 for i in range(40)])  # ~100 KB a row
    stream = reading._read_parquet(path)
    sizes = [item.batch.num_rows for item in stream.batches]
    assert sum(sizes) == 40
    assert max(sizes) <= 11  # ~1 MiB of decoded text a batch, not 20,000 rows


def test_an_ordinary_parquet_file_reads_in_one_batch(tmp_path):
    path = write(tmp_path / "ok.parquet", [f"row {i}" for i in range(500)])
    stream = reading._read_parquet(path)
    assert [item.batch.num_rows for item in stream.batches] == [500]


def test_a_bomb_hidden_after_ordinary_rows_is_stopped_while_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "PARQUET_RATIO_FLOOR_BYTES", 1 << 20)
    path = write(tmp_path / "late.parquet", ["short"] * 64 + ["b" * (64 << 10)] * 200)
    with pytest.raises(DatasetUnreadable, match="decompression bomb"):
        list(reading._read_parquet(path).batches)
