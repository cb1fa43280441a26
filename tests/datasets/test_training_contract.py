"""The normalized copy is what the training engine reads, and previews render rows as the engine does."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from jobs.training.data import COLUMNS_BY_TASK
from jobs.training.data import instruction_to_messages as engine_instruction_to_messages
from tests.datasets.conftest import jsonl
from webapp.datasets.kinds.sft import instruction_to_messages
from webapp.datasets.normalizing import CANONICAL_SCHEMAS
from webapp.datasets.services import local_normalized_files
from webapp.datasets.shapes import TASK_OF_SHAPE

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("input_text", ["", "some input"])
def test_instruction_rows_become_the_same_chat_as_in_the_engine(input_text):
    row = {"instruction": "Translate.", "input": input_text, "output": "cat"}
    assert instruction_to_messages(row["instruction"], row["input"], row["output"]) == engine_instruction_to_messages(row)


@pytest.mark.parametrize("shape", sorted(CANONICAL_SCHEMAS))
def test_every_shape_has_the_columns_the_engine_reads_for_its_task(shape):
    names = set(CANONICAL_SCHEMAS[shape].names)
    assert any(set(columns) <= names for columns in COLUMNS_BY_TASK[TASK_OF_SHAPE[shape]])


def test_ready_dataset_exposes_local_parquet_paths_the_engine_can_open(check):
    dataset = check("d.jsonl", jsonl([{"source": f"s{i}", "target": f"t{i}"} for i in range(50)]), validation_fraction=0.2)
    paths = local_normalized_files(dataset)
    assert set(paths) == {"train", "validation"}
    assert all(path.name == f"{split}.parquet" and path.exists() for split, path in paths.items())
    assert dataset.normalized_files()["train"] == f"datasets/{dataset.id}/normalized/train.parquet"
    assert pq.read_schema(paths["train"]).names == ["source", "target"]
