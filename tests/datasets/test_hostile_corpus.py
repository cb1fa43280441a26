"""Every broken or hostile file is refused with a 4xx or ends `invalid` with errors: never ready, never a 500."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from tests.datasets.conftest import ingest_and_check, upload
from tests.datasets.corpus import hostile_corpus
from webapp.datasets.models import Dataset, Status
from webapp.lib.errors import LayercakeError

CORPUS = hostile_corpus()
pytestmark = pytest.mark.django_db


def test_the_corpus_holds_at_least_sixty_files():
    assert len(CORPUS) >= 60
    assert len({case.case for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.case for case in CORPUS])
def test_hostile_file_is_refused_or_invalid_with_errors(case, alice):
    try:
        dataset = ingest_and_check(alice, case.filename, case.content, task=case.task)
    except LayercakeError as refused:
        assert 400 <= refused.status < 500
        assert refused.message
        assert not Dataset.objects.exists()
        return
    assert dataset.status == Status.INVALID, dataset.profile
    assert dataset.failure_reason
    assert dataset.api_errors(), "an invalid dataset lists what is wrong"
    assert dataset.normalized_files() == {}
    assert not default_storage.exists(f"{dataset.storage_prefix}/normalized/train.parquet")


def test_hostile_file_name_is_a_label_never_a_path(alice):
    dataset = ingest_and_check(alice, "../../etc/passwd.csv", "text,label\na,x\nb,y\n")
    assert dataset.status == Status.READY
    assert dataset.source_file == f"datasets/{dataset.id}/source.csv"
    assert dataset.original_filename == "passwd.csv"
    assert ".." not in dataset.name and "/" not in dataset.name


SAMPLE = [case for case in CORPUS if case.case in {
    "random bytes as .csv", "empty .jsonl", "png named .csv", "unsupported extension", "jsonl broken at row 12",
    "json nested 100000 deep", "chat no assistant turn", "tokens and tags of unequal length", "one class only",
    "truncated parquet", "20,000 columns",
} or case.filename.startswith("<script>")]


def test_api_sample_is_complete():
    assert len(SAMPLE) == 12


@pytest.mark.parametrize("case", SAMPLE, ids=[case.case for case in SAMPLE])
def test_hostile_file_through_the_api_gets_4xx_or_ends_invalid(case, api_alice):
    from webapp.datasets import services

    response = api_alice.post("/api/v1/datasets/", {"file": upload(case.filename, case.content), "task": case.task}, format="multipart")
    if response.status_code != 201:
        assert 400 <= response.status_code < 500, response.content
        body = response.json()
        assert body["error"] and isinstance(body["details"], list)
        return
    dataset_id = response.json()["id"]
    services.check_dataset(Dataset.objects.get(pk=dataset_id))
    body = api_alice.get(f"/api/v1/datasets/{dataset_id}/").json()
    assert body["status"] == "invalid"
    assert body["errors"] and all({"row", "field", "message"} <= set(error) for error in body["errors"])
