"""Helpers for dataset tests: uploads built in memory, and ingest + check without a worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from webapp.datasets import services
from webapp.datasets.models import Dataset


def upload(filename: str, content: bytes | str) -> SimpleUploadedFile:
    return SimpleUploadedFile(filename, content.encode() if isinstance(content, str) else content)


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def ingest_and_check(owner: Any, filename: str, content: bytes | str, **options: Any) -> Dataset:
    """What a worker does after an upload, run in the test process (no broker, no eager mode)."""
    dataset = services.ingest(upload(filename, content), owner, **options)
    return services.check_dataset(dataset)


@pytest.fixture
def check(alice):  # type: ignore[no-untyped-def]
    def run(filename: str, content: bytes | str, **options: Any) -> Dataset:
        return ingest_and_check(alice, filename, content, **options)

    return run
