"""Jobs fixtures: tiny base models in the catalog and ready datasets of each shape, made in seconds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs.models import Job
from webapp.catalog import importing
from webapp.catalog.models import CatalogModel
from webapp.datasets import services as datasets
from webapp.datasets.models import Dataset

INSTRUCTIONS = [
    {"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a} plus {b} is {a + b}."}
    for a in range(1, 9) for b in range(1, 6)
]
SENTIMENT = [
    {"text": text, "label": label}
    for text, label in [
        ("I loved this film, wonderful acting", "positive"), ("A delight from start to end", "positive"),
        ("Great story and a great cast", "positive"), ("Wonderful, I would watch it again", "positive"),
        ("Terrible plot and awful acting", "negative"), ("I hated every minute of it", "negative"),
        ("Boring, slow and far too long", "negative"), ("An awful waste of an evening", "negative"),
    ] * 5
]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(row) for row in rows).encode()


def ready_dataset(owner: Any, rows: list[dict[str, Any]], name: str, validation_fraction: float = 0.2) -> Dataset:
    upload = SimpleUploadedFile(f"{name}.jsonl", jsonl(rows), content_type="application/jsonl")
    dataset = datasets.ingest(upload, owner, name=name, validation_fraction=validation_fraction)
    dataset = datasets.check_dataset(dataset)
    assert dataset.status == "ready", dataset.api_errors()
    return dataset


def run_here(plan: Any) -> Job:
    """Create the planned job and run it in the test process, as a training worker would; it must succeed."""
    from jobs import runner, services

    job = services.create_job(plan, send=False)
    assert job.start("worker-test")
    runner.execute(job)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job


@pytest.fixture
def tiny_lm(tiny_causal_lm_dir) -> CatalogModel:
    return importing.import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")


@pytest.fixture
def tiny_bert(tiny_encoder_dir) -> CatalogModel:
    return importing.import_base_model(str(tiny_encoder_dir), name="tiny-bert")


@pytest.fixture
def sft_data(alice) -> Dataset:
    return ready_dataset(alice, INSTRUCTIONS, "arithmetic")


@pytest.fixture
def sentiment_data(alice) -> Dataset:
    return ready_dataset(alice, SENTIMENT, "sentiment")
