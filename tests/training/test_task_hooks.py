"""Each task's behaviour lives in its own hooks (jobs.training.tasks), which the engine, the catalog and the
playground call instead of testing task names: a new task is a registry row plus its modules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.training import registry, tasks
from webapp.catalog import cards
from webapp.lib.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
TASK_NAMES = "|".join(sorted({*registry.TASKS, *registry.SHAPES}, key=len, reverse=True))
# `task == "regression"`, `shape.name in ("chat", ...)`, `served.task != "seq2seq"`: a per-task branch.
BRANCH = re.compile(rf'\b(?:task|shape|name)\s*(?:==|!=|in|not in)\s*\(?\s*"(?:{TASK_NAMES})"')


@pytest.mark.parametrize("name", registry.TASKS)
def test_every_task_has_hooks_for_training_and_serving(name: str) -> None:
    kind = tasks.kind(name)
    assert kind.name == name
    entry = registry.task(name)
    assert kind.try_it, f"{name} has no model card snippet"
    if entry.causal:
        assert isinstance(kind, tasks.CausalKind), "causal tasks prompt through the chat template"
    if entry.classifier:
        # A head answers in the playground itself; generative tasks stream instead.
        assert type(kind).answer is not tasks.TaskKind.answer
    if entry.trainer in ("classifier", "seq2seq"):
        assert type(kind).encode is not tasks.TaskKind.encode, f"{name} must encode its rows for Trainer"
    if entry.trainer == "sft":
        assert type(kind).sft_rows is not tasks.CausalKind.sft_rows
    assert type(kind).metrics is not tasks.TaskKind.metrics
    assert set(kind.metric_names) <= set(METRIC_NAMES), "the pages name every metric the task reports"
    assert cards.try_it(name) == list(kind.try_it)


def test_an_unknown_task_is_refused_and_a_bare_base_gets_its_features() -> None:
    with pytest.raises(KeyError):
        tasks.kind("no_such_task")
    assert "last_hidden_state" in cards.try_it("feature_extraction")[0]


def test_the_label_vocabulary_comes_from_the_task() -> None:
    from datasets import Dataset

    from jobs.training.data import SplitDataset

    split = SplitDataset(
        "d",
        Dataset.from_list([{"tokens": ["a", "b"], "tags": ["O", "B-X"]}]),
        Dataset.from_list([{"tokens": ["c"], "tags": ["I-X"]}]),
    )
    assert tasks.kind("token_classification").labels([split]) == ["B-X", "I-X", "O"]
    assert tasks.kind("regression").labels([split]) is None  # a one-output head: no vocabulary
    assert tasks.kind("sft").labels([split]) is None


def test_no_code_outside_the_task_modules_branches_on_a_task_name() -> None:
    """The ratchet that keeps it so: engine, datasets, catalog and playground dispatch through the hooks."""
    allowed = {ROOT / "jobs/training/registry.py"}
    found = []
    for folder in ("jobs", "webapp"):
        for path in (ROOT / folder).rglob("*.py"):
            if path in allowed or "tasks" in path.relative_to(ROOT).parts[:3] or "kinds" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if BRANCH.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "per-task branches belong in the task's hooks:\n" + "\n".join(found)
