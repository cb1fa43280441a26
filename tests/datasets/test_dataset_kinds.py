"""Every registry task has its dataset kind, covering each of its shapes; the page includes a task's block."""

from __future__ import annotations

import pytest
from django.template.loader import get_template

from jobs.training import registry
from webapp.datasets import kinds


@pytest.mark.parametrize("task", registry.TASKS)
def test_each_task_has_a_dataset_kind_with_a_schema_for_each_of_its_shapes(task):
    kind = kinds.of_task(task)
    assert kind.task == task
    assert set(kind.schemas) == set(registry.TASK_TABLE[task].shapes)
    for shape in registry.TASK_TABLE[task].shapes:
        assert set(registry.SHAPE_TABLE[shape].required) <= set(kind.schemas[shape].names)


@pytest.mark.parametrize("task", registry.TASKS)
def test_a_kind_names_a_template_that_exists_or_none(task):
    template = kinds.of_task(task).profile_template
    if template is not None:
        get_template(template)


def test_an_unknown_task_has_no_kind():
    with pytest.raises(LookupError, match="Unknown task"):
        kinds.of_task("world_domination")
