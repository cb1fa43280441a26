"""Playground runs are never left waiting: the task id is stored, a broker outage fails the run with a
message the page shows, a lost message is sent again, and a run whose worker died is failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from webapp.playground import services, tasks
from webapp.playground.models import PlaygroundRun, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    messages: list[tuple[list[str], str]] = []
    monkeypatch.setattr(tasks.answer_run, "apply_async", lambda args, queue, task_id: messages.append((args, task_id)))
    return messages


def queued_run(owner, seconds_ago: int = 0) -> PlaygroundRun:  # type: ignore[no-untyped-def]
    run = PlaygroundRun.objects.create(owner=owner, prompt="Hello", answers=[])
    run.record_sent("first-message")
    PlaygroundRun.objects.filter(pk=run.pk).update(sent_at=timezone.now() - timedelta(seconds=seconds_ago))
    return run


def test_a_run_is_sent_after_commit_with_its_task_id_stored(alice, causal_base, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_run(alice, "Hello", [causal_base])
        assert sent == []
    run.refresh_from_db()
    assert sent == [([str(run.pk)], run.task_id)] and run.sends == 1


def test_an_unreachable_broker_fails_the_run_with_a_message_on_its_page(client_alice, causal_base, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.answer_run, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post("/playground/runs/", {"prompt": "Hello", "models": [str(causal_base.id)]})
    run = PlaygroundRun.objects.get()
    assert response.status_code == 302 and run.status == Status.FAILED
    page = client_alice.get(f"/playground/runs/{run.id}/answers/").content.decode()
    assert "The inference queue was unreachable" in page


def test_a_run_whose_message_was_lost_is_sent_again(alice, sent, settings, django_capture_on_commit_callbacks):
    fresh = queued_run(alice, seconds_ago=1)
    lost = queued_run(alice, seconds_ago=settings.LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert [r.pk for r in services.recover_stuck_runs()] == [lost.pk]
    lost.refresh_from_db()
    assert sent == [([str(lost.pk)], lost.task_id)] and lost.sends == 2 and lost.status == Status.QUEUED
    assert PlaygroundRun.objects.get(pk=fresh.pk).sends == 1


def test_a_run_no_worker_takes_fails_after_the_cap(client_alice, alice, sent, settings, django_capture_on_commit_callbacks):
    run = queued_run(alice)
    for _ in range(settings.LAYERCAKE_MAX_SENDS):
        PlaygroundRun.objects.filter(pk=run.pk).update(
            sent_at=timezone.now() - timedelta(seconds=settings.LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS + 1)
        )
        with django_capture_on_commit_callbacks(execute=True):
            services.recover_stuck_runs()
    run.refresh_from_db()
    assert run.status == Status.FAILED and len(sent) == settings.LAYERCAKE_MAX_SENDS - 1
    page = client_alice.get(f"/playground/runs/{run.id}/answers/").content.decode()
    assert f"No inference worker took this run after {settings.LAYERCAKE_MAX_SENDS} tries" in page


def test_a_run_waiting_behind_a_busy_inference_worker_is_not_given_up(alice, sent, settings):
    answering = queued_run(alice)
    assert answering.start("inference@busy")
    run = queued_run(alice)
    for _ in range(settings.LAYERCAKE_MAX_SENDS + 1):
        PlaygroundRun.objects.filter(pk=run.pk).update(
            sent_at=timezone.now() - timedelta(seconds=settings.LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS + 1)
        )
        services.recover_stuck_runs()
    run.refresh_from_db()
    assert run.status == Status.QUEUED and run.sends == settings.LAYERCAKE_MAX_SENDS + 2


def test_a_run_whose_worker_died_while_answering_fails(alice, sent, settings):
    run = queued_run(alice)
    assert run.start("inference@gone")
    assert services.recover_stuck_runs() == []  # still answering
    PlaygroundRun.objects.filter(pk=run.pk).update(
        started_at=timezone.now() - timedelta(seconds=settings.LAYERCAKE_PLAYGROUND_STUCK_SECONDS + 1)
    )
    assert [r.pk for r in services.recover_stuck_runs()] == [run.pk]
    run.refresh_from_db()
    assert run.status == Status.FAILED and "stopped while answering" in run.failure_reason
    assert sent == []  # not replayed: it may be what killed its worker
