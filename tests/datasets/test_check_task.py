"""The Celery task: thin, safe under redelivery, and never leaves a dataset checking."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import upload
from webapp.datasets import services
from webapp.datasets.models import Dataset, Status
from webapp.datasets.tasks import check_dataset

pytestmark = pytest.mark.django_db


def test_task_checks_the_dataset(alice):
    dataset = services.ingest(upload("a.csv", "text,label\na,x\nb,y\n"), alice)
    check_dataset(str(dataset.pk))
    assert Dataset.objects.get(pk=dataset.pk).status == Status.READY


def test_task_for_a_deleted_dataset_does_nothing(alice):
    dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    dataset_id = str(dataset.pk)
    services.delete_dataset(dataset)
    check_dataset(dataset_id)
    assert not Dataset.objects.exists()


def test_second_delivery_after_the_check_finished_changes_nothing(alice):
    dataset = services.ingest(upload("a.csv", "text,label\na,x\nb,y\n"), alice)
    check_dataset(str(dataset.pk))
    checked_at = Dataset.objects.get(pk=dataset.pk).checked_at
    check_dataset(str(dataset.pk))
    assert Dataset.objects.get(pk=dataset.pk).checked_at == checked_at


def test_redelivery_after_a_worker_died_mid_check_checks_again(alice):
    dataset = services.ingest(upload("a.csv", "text,label\na,x\nb,y\n"), alice)
    assert dataset.begin_check()  # the first worker started, then died
    check_dataset(str(dataset.pk))
    assert Dataset.objects.get(pk=dataset.pk).status == Status.READY


def test_an_unexpected_crash_ends_invalid_not_stuck(alice, monkeypatch):
    dataset = services.ingest(upload("a.csv", "text,label\na,x\nb,y\n"), alice)

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services, "check_file", crash)
    check_dataset(str(dataset.pk))
    dataset.refresh_from_db()
    assert dataset.status == Status.INVALID
    assert "bug on our side" in dataset.failure_reason


def test_transitions_move_only_from_the_expected_states(alice):
    dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    assert dataset.begin_check()
    assert not Dataset.objects.get(pk=dataset.pk).begin_check()
    assert not dataset.request_check()
    assert dataset.fail("broken")
    assert not dataset.succeed(shape="text", task="text", rows=1, columns=[], profile={}, preview=[], normalized={})
    assert dataset.request_check(max_length=64)
    assert Dataset.objects.get(pk=dataset.pk).status == Status.UPLOADED


def test_a_broker_outage_at_upload_ends_invalid_with_a_retry_hint_not_stuck(alice, monkeypatch, django_capture_on_commit_callbacks):
    from webapp.datasets import tasks

    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.check_dataset, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    dataset.refresh_from_db()
    assert dataset.status == Status.INVALID
    assert "queue was unreachable" in dataset.failure_reason
    assert dataset.request_check()


def test_a_file_that_keeps_killing_its_worker_ends_invalid_after_three_tries(alice):
    dataset = services.ingest(upload("a.csv", "text,label\na,x\nb,y\n"), alice)
    assert dataset.begin_check()  # delivery 1 starts, its worker dies
    for _ in range(2):  # deliveries 2 and 3 start again and die too
        assert dataset.resume_check()
    check_dataset(str(dataset.pk))  # delivery 4
    dataset.refresh_from_db()
    assert dataset.status == Status.INVALID
    assert "stopped its worker several times" in dataset.failure_reason
