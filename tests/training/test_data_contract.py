"""The engine reads the datasets app's normalized Parquet files as the contract describes them."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from jobs.training.data import (
    instruction_to_messages,
    load_splits,
    to_conversations,
)
from jobs.training.spec import DatasetFiles
from jobs.training.tasks import kind
from tests.training.conftest import chat_rows, instruction_rows, write_parquet


def test_instruction_input_follows_the_instruction_in_the_user_turn() -> None:
    messages = instruction_to_messages({"instruction": "Translate.", "input": "chat", "output": "cat"})
    assert messages == [
        {"role": "user", "content": "Translate.\n\nchat"},
        {"role": "assistant", "content": "cat"},
    ]
    assert instruction_to_messages({"instruction": "Hi", "input": "", "output": "Yo"})[0]["content"] == "Hi"


def test_missing_validation_is_split_off_with_the_seed(tmp_path: Path) -> None:
    files = [DatasetFiles("d", write_parquet(instruction_rows(40), tmp_path / "d.parquet"))]
    first = load_splits("sft", files, eval_fraction=0.25, seed=7)[0]
    again = load_splits("sft", files, eval_fraction=0.25, seed=7)[0]
    assert (len(first.train), len(first.validation)) == (30, 10)
    assert first.validation["output"] == again.validation["output"]
    assert set(first.train["instruction"]) | set(first.validation["instruction"]) == {
        r["instruction"] for r in instruction_rows(40)
    }


def test_chat_rows_without_template_markers_become_prompt_and_last_answer(tmp_path: Path) -> None:
    files = [DatasetFiles("d", write_parquet(chat_rows(4), tmp_path / "d.parquet"))]
    train = load_splits("sft", files, eval_fraction=0.25, seed=0)[0].train
    converted = to_conversations(train, with_generation_markers=False)[0]
    assert [m["role"] for m in converted["prompt"]] == ["system", "user", "assistant", "user"]
    assert converted["completion"][0]["role"] == "assistant"
    with_markers = to_conversations(train, with_generation_markers=True)[0]
    assert len(with_markers["messages"]) == 5


def test_tags_go_to_the_first_sub_token_and_the_rest_are_ignored(tiny_encoder: Path) -> None:
    from datasets import Dataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    rows = Dataset.from_list([{"tokens": ["Zyxwvut", "lives"], "tags": ["B-PER", "O"]}])
    encoded = kind("token_classification").encode(rows, tokenizer, {"B-PER": 0, "O": 1}, max_length=32)[0]
    word_pieces = tokenizer(["Zyxwvut", "lives"], is_split_into_words=True).word_ids()
    assert word_pieces.count(0) > 1, "the made-up word must split into several sub-tokens"
    labels = encoded["labels"]
    assert labels[0] == -100 and labels[-1] == -100  # [CLS], [SEP]
    first = word_pieces.index(0)
    assert labels[first] == 0
    assert all(labels[i] == -100 for i, w in enumerate(word_pieces) if w == 0 and i != first)
    assert labels[word_pieces.index(1)] == 1
