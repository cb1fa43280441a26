"""Dataset checks are never left waiting: the task id is stored, a broker outage is reported, and a check
whose message was lost or whose worker died is sent again, then given up with a reason."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from tests.datasets.conftest import upload
from webapp.datasets import services, tasks
from webapp.datasets.models import Dataset, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    messages: list[tuple[list[str], str]] = []
    monkeypatch.setattr(tasks.check_dataset, "apply_async", lambda args, task_id: messages.append((args, task_id)))
    return messages


def age(dataset: Dataset, seconds: int, **fields_ago: str) -> None:
    """Move the dataset's timestamps `seconds` into the past."""
    ago = timezone.now() - timedelta(seconds=seconds)
    Dataset.objects.filter(pk=dataset.pk).update(**{field: ago for field in fields_ago.values()})


def test_upload_sends_the_check_after_commit_with_its_task_id_stored(alice, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
        assert sent == []
    dataset.refresh_from_db()
    assert sent == [([str(dataset.pk)], dataset.task_id)]
    assert dataset.check_sends == 1 and dataset.check_sent_at is not None


def test_an_unreachable_broker_ends_the_check_invalid_not_a_500(api_alice, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.check_dataset, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.post("/api/v1/datasets/", {"file": upload("a.csv", "text\na\n")}, format="multipart")
    assert response.status_code == 201
    dataset = Dataset.objects.get()
    assert dataset.status == Status.INVALID
    assert "checking queue was unreachable" in dataset.failure_reason


def test_an_upload_never_picked_up_is_sent_again(alice, sent, settings, django_capture_on_commit_callbacks):
    dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    first_task = Dataset.objects.get(pk=dataset.pk).task_id
    assert services.recover_stuck_checks() == []  # sent just now: it may only be waiting its turn
    age(dataset, settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1, sent="check_sent_at")
    with django_capture_on_commit_callbacks(execute=True):
        assert [d.pk for d in services.recover_stuck_checks()] == [dataset.pk]
    dataset.refresh_from_db()
    assert sent == [([str(dataset.pk)], dataset.task_id)] and dataset.task_id != first_task
    assert dataset.status == Status.UPLOADED and dataset.check_sends == 2
    assert services.recover_stuck_checks() == []  # not again until the bound has passed once more


def test_an_upload_no_worker_takes_ends_invalid_after_the_cap(alice, sent, settings):
    dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    for _ in range(settings.LAYERCAKE_MAX_SENDS):
        age(dataset, settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1, sent="check_sent_at")
        services.recover_stuck_checks()
    dataset.refresh_from_db()
    assert dataset.status == Status.INVALID
    assert f"No checking worker took this dataset after {settings.LAYERCAKE_MAX_SENDS} tries" in dataset.failure_reason
    assert dataset.request_check()  # “Save and check again” starts a fresh count
    assert Dataset.objects.get(pk=dataset.pk).check_sends == 0


def test_an_upload_waiting_behind_a_busy_checks_worker_is_not_given_up(alice, sent, settings):
    dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    ahead = services.ingest(upload("b.csv", "text\nb\n"), alice)
    assert ahead.begin_check()  # the worker is on a long check of the file ahead
    for _ in range(settings.LAYERCAKE_MAX_SENDS + 1):
        age(dataset, settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1, sent="check_sent_at")
        services.recover_stuck_checks()
    dataset.refresh_from_db()
    assert dataset.status == Status.UPLOADED and dataset.check_sends == settings.LAYERCAKE_MAX_SENDS + 2


def test_a_check_whose_worker_died_is_sent_again_and_then_checked(alice, sent, settings, django_capture_on_commit_callbacks):
    dataset = services.ingest(upload("a.csv", "text,label\na,x\nb,y\n"), alice)
    assert dataset.begin_check()  # its worker started, then died with the message
    age(dataset, settings.LAYERCAKE_CHECK_STUCK_SECONDS - 10, sent="check_sent_at", started="check_started_at")
    assert services.recover_stuck_checks() == []  # it may still be checking
    age(dataset, settings.LAYERCAKE_CHECK_STUCK_SECONDS + 1, sent="check_sent_at", started="check_started_at")
    with django_capture_on_commit_callbacks(execute=True):
        assert [d.pk for d in services.recover_stuck_checks()] == [dataset.pk]
    assert len(sent) == 1
    tasks.check_dataset(*sent[0][0])  # the new message is delivered
    assert Dataset.objects.get(pk=dataset.pk).status == Status.READY


def test_a_check_that_keeps_losing_its_worker_ends_invalid(alice, sent, settings):
    dataset = services.ingest(upload("a.csv", "text\na\n"), alice)
    assert dataset.begin_check()
    for _ in range(services.MAX_CHECK_ATTEMPTS - 1):
        assert dataset.resume_check()
    age(dataset, settings.LAYERCAKE_CHECK_STUCK_SECONDS + 1, sent="check_sent_at", started="check_started_at")
    services.recover_stuck_checks()
    dataset.refresh_from_db()
    assert dataset.status == Status.INVALID
    assert "stopped its worker several times" in dataset.failure_reason
