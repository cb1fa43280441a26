"""Issue 13: LLaMA-Factory's ShareGPT data is accepted as-is; preference pairs can still be mapped for SFT."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status
from webapp.datasets.services import local_normalized_files

pytestmark = pytest.mark.django_db


def turns(*pairs):  # type: ignore[no-untyped-def]
    return [{"from": speaker, "value": text} for speaker, text in pairs]


SHAREGPT = [
    {"conversations": turns(("human", "Hi, who are you?"), ("gpt", "I am an assistant.")), "system": "Be brief."},
    {"conversations": turns(("system", "Answer in French."), ("human", "Hello"), ("gpt", "Bonjour"), ("human", "Bye"), ("gpt", "Au revoir")), "system": ""},
    {"conversations": turns(("human", "2+2?"), ("gpt", "4")), "system": "Be brief."},
]


def messages_of(dataset):  # type: ignore[no-untyped-def]
    return pq.read_table(local_normalized_files(dataset)["train"]).column("messages").to_pylist()


def test_sharegpt_conversations_become_chat_messages(check):
    dataset = check("sharegpt.json", json.dumps(SHAREGPT))
    assert dataset.status == Status.READY, dataset.failure_reason
    assert (dataset.shape, dataset.task, dataset.rows) == ("chat", "sft", 3)
    first, second, _ = messages_of(dataset)
    assert first == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi, who are you?"},
        {"role": "assistant", "content": "I am an assistant."},
    ]
    assert [turn["role"] for turn in second] == ["system", "user", "assistant", "user", "assistant"]
    assert second[0]["content"] == "Answer in French."
    assert any("ShareGPT" in note for note in dataset.profile["notes"])


def test_sharegpt_without_a_system_column_as_jsonl(check):
    rows = [{"conversations": turns(("human", f"q{i}"), ("gpt", f"a{i}"))} for i in range(3)]
    dataset = check("sharegpt.jsonl", jsonl(rows))
    assert dataset.status == Status.READY, dataset.failure_reason
    assert messages_of(dataset)[2] == [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]


def test_sharegpt_tool_turns_are_refused_with_their_row(check):
    rows = [SHAREGPT[0], {"conversations": turns(("human", "weather?"), ("function_call", '{"name": "w"}'), ("observation", "sunny"), ("gpt", "Sunny."))}]
    dataset = check("tools.json", json.dumps(rows))
    assert dataset.status == Status.INVALID
    assert "Row 2 has a `function_call` turn (tool calling), which cannot be trained yet" in dataset.failure_reason


def test_a_tools_column_is_refused_not_dropped(check):
    rows = [{"conversations": turns(("human", "hi"), ("gpt", "yo")), "tools": ""}, {"conversations": turns(("human", "hi"), ("gpt", "yo")), "tools": '[{"name": "w"}]'}]
    dataset = check("tools.jsonl", jsonl(rows))
    assert dataset.status == Status.INVALID
    assert dataset.failure_reason.startswith("Row 2 defines tools in `tools`")


def test_mapping_the_chosen_answers_trains_on_them(check):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": "bad"} for i in range(3)]
    dataset = check("dpo.jsonl", jsonl(rows), mapping={"instruction": "prompt", "output": "chosen"})
    assert (dataset.status, dataset.shape) == (Status.READY, "instruction"), dataset.failure_reason
