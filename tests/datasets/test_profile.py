"""The profile: duplicates, labels and imbalance, splits and leakage, token lengths and chat-template previews."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import ingest_and_check, jsonl, upload
from webapp.datasets import services
from webapp.datasets.models import Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_llama(tiny_causal_lm_dir):  # type: ignore[no-untyped-def]
    from webapp.catalog import importing

    return importing.import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")


def test_rows_columns_and_missing_values_are_counted(check):
    dataset = check("data.jsonl", jsonl([{"instruction": "a", "input": None, "output": "b", "extra": 1}] * 2 + [{"instruction": "c", "output": "d"}]))
    assert dataset.profile["rows"] == 3
    assert dataset.profile["columns"] == ["instruction", "input", "output", "extra"]
    assert "input" not in dataset.profile["missing"]  # optional: reported apart, not as missing
    assert dataset.profile["optional_empty"]["input"] == 3
    assert dataset.profile["source_nulls"] == {"input": 3, "extra": 1}


def test_exact_and_near_duplicates_are_counted_apart(check):
    rows = [{"text": "Hello world", "label": "a"}, {"text": "Hello world", "label": "a"}, {"text": "hello, WORLD!", "label": "a"}, {"text": "other", "label": "b"}]
    dataset = check("dups.jsonl", jsonl(rows))
    assert dataset.profile["duplicates"]["exact"] == 1
    assert dataset.profile["duplicates"]["near"] == 1
    assert any("exact duplicates" in warning for warning in dataset.profile["warnings"])


def test_label_distribution_warns_about_imbalance(check):
    dataset = check("skew.csv", "text,label\n" + "".join(f"t{i},spam\n" for i in range(30)) + "x,ham\n")
    assert dataset.profile["labels"]["counts"] == {"spam": 30, "ham": 1}
    assert dataset.profile["labels"]["imbalance_ratio"] == 30.0
    assert any("imbalanced" in warning for warning in dataset.profile["warnings"])


def test_balanced_labels_do_not_warn(check):
    dataset = check("even.csv", "text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)))
    assert not any("imbalanced" in warning for warning in dataset.profile["warnings"])


def test_validation_fraction_splits_rows_into_two_parquet_files(check):
    dataset = check("split.jsonl", jsonl([{"text": f"document {i}"} for i in range(2000)]), validation_fraction=0.2)
    files = services.local_normalized_files(dataset)
    train, validation = pq.read_table(files["train"]).num_rows, pq.read_table(files["validation"]).num_rows
    assert train + validation == 2000
    assert 300 < validation < 500
    assert dataset.profile["splits"] == {"train": train, "validation": validation}
    assert dataset.profile["leakage"]["exact"] == 0


def test_duplicates_land_in_the_same_split_so_they_cannot_leak(check):
    rows = [{"text": f"document {i % 100}"} for i in range(1000)]
    dataset = check("dups.jsonl", jsonl(rows), validation_fraction=0.3)
    assert dataset.profile["leakage"]["exact"] == 0


def test_second_file_is_the_validation_split_and_overlap_is_reported_as_leakage(alice):
    train = jsonl([{"text": f"doc {i}", "label": "ab"[i % 2]} for i in range(10)])
    validation = jsonl([{"text": "doc 1", "label": "b"}, {"text": "DOC 2!", "label": "a"}, {"text": "new", "label": "a"}])
    dataset = services.ingest(upload("train.jsonl", train), alice, validation_upload=upload("valid.jsonl", validation))
    dataset = services.check_dataset(dataset)
    assert dataset.status == Status.READY
    assert set(dataset.normalized_files()) == {"train", "validation"}
    assert dataset.profile["leakage"] == {"validation_rows": 3, "exact": 1, "near": 2, "share": 0.6667}
    assert any("leakage" in warning for warning in dataset.profile["warnings"])


def test_validation_file_of_another_shape_is_invalid(alice):
    dataset = services.ingest(
        upload("train.csv", "text,label\na,x\nb,y\n"), alice, validation_upload=upload("valid.csv", "source,target\na,b\n")
    )
    dataset = services.check_dataset(dataset)
    assert dataset.status == Status.INVALID
    assert dataset.failure_reason.startswith("The validation file does not match the training file")


def test_bad_rows_in_the_validation_file_are_named_as_such(alice):
    dataset = services.ingest(
        upload("train.csv", "text,label\na,x\nb,y\n"), alice, validation_upload=upload("valid.csv", "text,label\nc,\n")
    )
    dataset = services.check_dataset(dataset)
    assert dataset.errors == [{"row": 1, "field": "label", "message": "in the validation file: `label` is empty"}]


def test_token_lengths_use_the_chosen_model_and_count_truncation(alice, tiny_llama):
    rows = [{"text": "word " * n} for n in (5, 10, 400, 800)]
    dataset = ingest_and_check(alice, "lengths.jsonl", jsonl(rows), profile_model=tiny_llama, max_length=64)
    tokens = dataset.profile["tokens"]
    assert tokens["model"] == "tiny-llama"
    assert tokens["sampled_rows"] == 4
    assert tokens["truncated_share"] == 0.5
    assert sum(tokens["histogram"]["counts"]) == 4


def test_chat_preview_is_rendered_with_the_models_chat_template(alice, tiny_llama):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama.local_dir()))
    messages = [{"role": "user", "content": "<b>hi</b>"}, {"role": "assistant", "content": "hello"}]
    dataset = ingest_and_check(alice, "chat.jsonl", jsonl([{"messages": messages}]), profile_model=tiny_llama)
    preview = dataset.preview[0]
    assert preview["chat_template"] is True
    assert preview["rendered"] == tokenizer.apply_chat_template(messages, tokenize=False)
    assert "<|im_start|>assistant" in preview["rendered"]


def test_instruction_rows_preview_as_a_user_then_assistant_chat(check):
    dataset = check("instr.csv", "instruction,input,output\nTranslate,bonjour,hello\n")
    assert dataset.preview[0]["rendered"] == "user: Translate\n\nbonjour\n\nassistant: hello"


def test_a_tokenizer_that_cannot_load_is_a_warning_not_a_failure(alice, tiny_llama, monkeypatch):
    def broken(dataset):  # type: ignore[no-untyped-def]
        raise OSError("no tokenizer files")

    monkeypatch.setattr(services, "_load_tokenizer", broken)
    dataset = ingest_and_check(alice, "t.txt", "hello\nworld\n", profile_model=tiny_llama)
    assert dataset.status == Status.READY
    assert "tokens" not in dataset.profile
    assert any("could not be loaded" in warning for warning in dataset.profile["warnings"])


def test_validation_file_may_spell_the_columns_differently(alice):
    dataset = services.ingest(
        upload("train.csv", "text,label\na,x\nb,y\n"), alice, validation_upload=upload("valid.jsonl", jsonl([{"TEXT": "c", "Label": "x"}]))
    )
    dataset = services.check_dataset(dataset)
    assert dataset.status == Status.READY
    assert dataset.profile["splits"] == {"train": 2, "validation": 1}


def test_validation_file_of_another_sft_shape_is_invalid(alice):
    chat = jsonl([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    dataset = services.ingest(
        upload("train.jsonl", chat), alice, validation_upload=upload("valid.csv", "instruction,output\nq,a\n")
    )
    dataset = services.check_dataset(dataset)
    assert dataset.status == Status.INVALID
    assert "it holds instruction data, the training file chat data" in dataset.failure_reason


def test_rows_sharing_a_long_template_prefix_are_not_near_duplicates(check):
    template = "Below is an instruction that describes a task. Write a response that completes the request. " * 2
    rows = [{"text": template + f"Task {i}: {word}", "label": "ab"[i % 2]} for i, word in enumerate(["sort", "count", "reverse", "add"])]
    dataset = check("template.jsonl", jsonl(rows))
    assert dataset.profile["duplicates"] == {**dataset.profile["duplicates"], "exact": 0, "near": 0}


def test_empty_labels_are_not_counted_as_a_class(check):
    dataset = check("labels.csv", "text,label\na,x\nb,y\nc,\n")
    assert dataset.profile["labels"]["counts"] == {"x": 1, "y": 1}
    assert dataset.profile["labels"]["classes"] == 2


def test_length_histogram_bins_are_whole_numbers_from_the_shortest_to_past_the_longest_row(check):
    dataset = check("short.txt", "a\nbb\nccc\n")
    histogram = dataset.profile["char_lengths"]["histogram"]
    assert histogram["bins"] == [1, 2, 3, 4]
    assert histogram["counts"] == [1, 1, 1]


def test_a_chat_template_that_refuses_a_row_is_a_warning_not_a_failure(alice, tiny_llama, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    def refuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("Conversation roles must alternate")

    monkeypatch.setattr(PreTrainedTokenizerBase, "apply_chat_template", refuse)
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    dataset = ingest_and_check(alice, "chat.jsonl", jsonl(rows), profile_model=tiny_llama)
    assert dataset.status == Status.READY
    assert any("roles must alternate" in warning for warning in dataset.profile["warnings"])
    assert dataset.preview[0]["chat_template"] is False
