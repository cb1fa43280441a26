"""The registry is the one table of tasks, shapes and methods: every entry must be complete and usable."""

from __future__ import annotations

import peft
import pytest
import transformers

from jobs.training import presets, registry
from jobs.training.spec import HYPERPARAMETERS, Hyperparameters


@pytest.mark.parametrize("name", registry.TASKS)
def test_every_task_is_fed_by_a_shape_and_loads_with_a_real_class(name: str) -> None:
    task = registry.task(name)
    assert task.shapes, f"no dataset shape feeds {name}"
    assert hasattr(transformers, task.model_class)
    assert registry.peft_task_type(name) in set(peft.TaskType)
    assert task.architecture in ("causal_lm", "encoder", "seq2seq")
    assert set(task.methods) <= set(registry.METHODS)
    # The presets have a full row for its family: resolving every method gives in-range values.
    for method in task.methods:
        if registry.method(method).needs_cuda:
            continue
        overrides = {"prompt_init_text": "Classify."} if method == "prompt_tuning" else {}
        values = presets.resolve_hyperparameters(name, method, 100_000_000, overrides)
        assert not presets.validate_overrides({k: v for k, v in values.to_dict().items() if v is not None})


def test_tasks_of_a_base_are_computed_from_its_architecture() -> None:
    assert registry.tasks_for_architecture("causal_lm") == [t for t in registry.TASKS if registry.task(t).causal]
    assert "classification" in registry.tasks_for_architecture("encoder")
    assert "sft" not in registry.tasks_for_architecture("encoder")
    assert registry.tasks_for_architecture("no-such-family") == []


def test_adapters_merge_unless_they_are_prompt_learning() -> None:
    assert registry.peft_type_mergeable("LORA")
    assert registry.peft_type_mergeable("IA3")
    assert not registry.peft_type_mergeable("PROMPT_TUNING")
    assert not registry.peft_type_mergeable("prefix_tuning")
    assert {m for m in registry.METHODS if registry.method(m).mergeable} == {"lora", "qlora"}
    assert all(registry.method(m).adapter for m in registry.MERGEABLE_METHODS)


def test_every_hyperparameter_is_defined_once_with_type_help_and_range() -> None:
    defaults = Hyperparameters()
    for name, knob in HYPERPARAMETERS.items():
        assert knob["help"], f"{name} has no help text"
        default = getattr(defaults, name)
        assert isinstance(default, knob["types"]) or default is None, name
        if knob["range"] and isinstance(default, (int, float)) and not isinstance(default, bool):
            low, high = knob["range"]
            assert low <= default <= high, name
    assert presets.validate_overrides({"learning_rate": 2.0}) == [
        "Hyperparameter 'learning_rate' must be between 1e-07 and 1, not 2.0."
    ]
