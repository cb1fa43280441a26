"""Each shape uploads, passes its checks and gets a normalized Parquet copy in the contract's columns."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status
from webapp.datasets.services import local_normalized_files

pytestmark = pytest.mark.django_db


def normalized(dataset, split="train"):
    return pq.read_table(local_normalized_files(dataset)[split])


def test_instruction_csv_with_capitalized_columns_is_ready_with_empty_input(check):
    dataset = check("alpaca.csv", "Instruction,Output\nSay hi,hi\nAdd 1 and 1,2\n")
    assert (dataset.status, dataset.shape, dataset.task, dataset.rows) == (Status.READY, "instruction", "sft", 2)
    table = normalized(dataset)
    assert table.schema.names == ["instruction", "input", "output"]
    assert table.to_pylist()[0] == {"instruction": "Say hi", "input": "", "output": "hi"}


def test_chat_jsonl_normalizes_to_role_content_structs(check):
    rows = [{"messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 1}]}] * 3
    dataset = check("chat.jsonl", jsonl(rows))
    assert (dataset.status, dataset.shape, dataset.task) == (Status.READY, "chat", "sft")
    table = normalized(dataset)
    assert table.schema.field("messages").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert table.to_pylist()[0]["messages"][2] == {"role": "assistant", "content": "hello"}


def test_plain_text_splits_documents_at_blank_lines(check):
    dataset = check("notes.txt", "first paragraph\nstill first\n\nsecond one\n\n\nthird\n")
    assert (dataset.status, dataset.shape, dataset.task, dataset.rows) == (Status.READY, "text", "text", 3)
    assert normalized(dataset).column("text").to_pylist()[0] == "first paragraph\nstill first"
    assert any("blank-line" in note for note in dataset.profile["notes"])


def test_plain_text_without_blank_lines_is_one_document_per_line(check):
    dataset = check("lines.txt", "one\ntwo\nthree\n")
    assert dataset.rows == 3
    assert any("per line" in note for note in dataset.profile["notes"])


def test_classification_json_with_integer_labels_stores_labels_as_text(check):
    rows = [{"TEXT": f"text {i}", "Label": i % 2} for i in range(6)]
    dataset = check("labels.json", json.dumps(rows))
    assert (dataset.status, dataset.shape, dataset.task) == (Status.READY, "classification", "classification")
    table = normalized(dataset)
    assert table.schema.field("label").type == pa.string()
    assert set(table.column("label").to_pylist()) == {"0", "1"}


def test_token_classification_jsonl_keeps_tokens_and_tags_as_string_lists(check):
    rows = [{"tokens": ["Alice", "lives", "here"], "tags": ["B-PER", "O", "O"]}, {"tokens": ["Bob"], "tags": ["B-PER"]}]
    dataset = check("ner.jsonl", jsonl(rows))
    assert (dataset.status, dataset.shape) == (Status.READY, "token_classification")
    table = normalized(dataset)
    assert table.schema.field("tags").type == pa.list_(pa.string())
    assert dataset.profile["tags"] == {"O": 2, "B-PER": 2}


def test_seq2seq_parquet_is_ready(check):
    sink = io.BytesIO()
    pq.write_table(pa.table({"Source": ["hello", "bye"], "Target": ["bonjour", "au revoir"], "id": [1, 2]}), sink)
    dataset = check("translate.parquet", sink.getvalue())
    assert (dataset.status, dataset.shape, dataset.task) == (Status.READY, "seq2seq", "seq2seq")
    assert normalized(dataset).schema.names == ["source", "target"]
    assert dataset.columns == ["Source", "Target", "id"]


def test_tsv_with_utf8_bom_is_read(check):
    dataset = check("data.tsv", "\ufefftext\tlabel\nbonjour\tfr\nhello\ten\n".encode())
    assert (dataset.status, dataset.columns) == (Status.READY, ["text", "label"])


def test_utf16_with_bom_is_transcoded_and_says_so(check):
    dataset = check("data.csv", "text,label\ncafé,fr\ntea,en\n".encode("utf-16"))
    assert dataset.status == Status.READY
    assert normalized(dataset).column("text").to_pylist()[0] == "café"
    assert any("UTF-16" in note for note in dataset.profile["notes"])


def test_csv_formulas_and_html_stay_plain_text(check):
    dataset = check("formula.csv", 'text,label\n"=HYPERLINK(""http://evil"")",a\n<script>alert(1)</script>,b\n007,c\n')
    assert dataset.status == Status.READY
    texts = normalized(dataset).column("text").to_pylist()
    assert texts == ['=HYPERLINK("http://evil")', "<script>alert(1)</script>", "007"]


def test_declared_task_picks_text_out_of_a_text_and_label_file(check):
    dataset = check("both.csv", "text,label\na,x\nb,y\n", task="text")
    assert (dataset.status, dataset.shape, dataset.task) == (Status.READY, "text", "text")
    assert normalized(dataset).schema.names == ["text"]


def test_declared_task_the_content_does_not_fit_is_invalid_with_the_reason(check):
    dataset = check("both.csv", "text,label\na,x\nb,y\n", task="seq2seq")
    assert dataset.status == Status.INVALID
    assert "Task `seq2seq` needs columns `source` + `target`" in dataset.failure_reason


def test_missing_output_column_says_what_an_instruction_dataset_needs(check):
    dataset = check("instr.csv", "instruction,answer\nq,a\n")
    assert dataset.failure_reason.startswith(
        "Column `output` missing: an instruction dataset needs instruction and output"
    )


def test_csv_fields_may_hold_quoted_line_breaks(check):
    dataset = check("multi.csv", 'instruction,output\n"Write a poem","Roses are red,\nviolets are blue"\nq,a\n')
    assert (dataset.status, dataset.rows) == (Status.READY, 2)
    assert normalized(dataset).column("output").to_pylist()[0] == "Roses are red,\nviolets are blue"
