"""Deployment profiles are never left `queued` or `running` for good: the task id is stored, a broker outage
marks the profile failed with the reason, and a lost message or a dead worker gets it sent again, then given up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from jobs.services import online_queues
from webapp.catalog import deployment, tasks
from webapp.catalog.models import CatalogModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    messages: list[tuple[list[str], str]] = []
    monkeypatch.setattr(tasks.profile_deployment, "apply_async", lambda args, queue, task_id: messages.append((args, task_id)))
    return messages


def backdate(model: CatalogModel, key: str, seconds: int) -> None:
    state = dict(CatalogModel.objects.get(pk=model.pk).deployment)
    state[key] = (timezone.now() - timedelta(seconds=seconds)).isoformat()
    CatalogModel.objects.filter(pk=model.pk).update(deployment=state)


def state_of(model: CatalogModel) -> dict:
    return CatalogModel.objects.get(pk=model.pk).deployment


def recover() -> list[CatalogModel]:
    """As the periodic check (jobs.tasks.check_jobs) calls it: told the queues of the workers online."""
    return deployment.recover_stuck_profiles(online_queues())


def test_the_request_is_sent_after_commit_with_its_task_id_stored(api_alice, alices_causal_adapter, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/profile/")
    assert response.status_code == 202 and response.json()["deployment"]["status"] == "queued"
    assert sent == [([str(alices_causal_adapter.id)], state_of(alices_causal_adapter)["task_id"])]


def test_an_unreachable_broker_marks_the_profile_failed_with_the_reason(client_alice, alices_causal_adapter, monkeypatch, django_capture_on_commit_callbacks):
    def down(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("connection refused")

    monkeypatch.setattr(tasks.profile_deployment, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(f"/models/{alices_causal_adapter.id}/profile/")
    assert response.status_code in (200, 302)
    assert state_of(alices_causal_adapter) == {
        "status": "failed", "error": "The measuring queue was unreachable: ask again in a moment."
    }


def test_a_profile_whose_message_was_lost_is_sent_again(alices_causal_adapter, sent, settings, django_capture_on_commit_callbacks):
    deployment.request_deployment_profile(alices_causal_adapter)
    assert recover() == []  # sent just now
    backdate(alices_causal_adapter, "sent_at", settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert [m.pk for m in recover()] == [alices_causal_adapter.pk]
    state = state_of(alices_causal_adapter)
    assert state["status"] == "queued" and state["sends"] == 2
    assert sent == [([str(alices_causal_adapter.id)], state["task_id"])]


def test_a_profile_whose_worker_died_is_sent_again_then_given_up(alices_causal_adapter, sent, settings):
    deployment.request_deployment_profile(alices_causal_adapter)
    for sends in range(1, settings.LAYERCAKE_MAX_SENDS + 1):
        # a worker takes the message, marks it running, and dies
        CatalogModel.objects.filter(pk=alices_causal_adapter.pk).update(
            deployment={"status": "running", "started_at": timezone.now().isoformat(), "sends": sends}
        )
        assert recover() == []  # it may still be measuring
        backdate(alices_causal_adapter, "started_at", settings.LAYERCAKE_PROFILE_STUCK_SECONDS + 1)
        recover()
    state = state_of(alices_causal_adapter)
    assert state["status"] == "failed"
    assert f"stopped {settings.LAYERCAKE_MAX_SENDS} times" in state["error"]


def test_a_profile_no_worker_takes_is_given_up_with_the_reason(alices_causal_adapter, sent, settings):
    deployment.request_deployment_profile(alices_causal_adapter)
    for _ in range(settings.LAYERCAKE_MAX_SENDS):
        backdate(alices_causal_adapter, "sent_at", settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1)
        recover()
    state = state_of(alices_causal_adapter)
    assert state["status"] == "failed" and f"No worker took the measurement after {settings.LAYERCAKE_MAX_SENDS} tries" in state["error"]


def test_a_queued_profile_waits_while_a_cpu_worker_is_busy(alices_causal_adapter, sent, settings):
    from jobs.worker_registry import register

    register("cpu@busy-with-a-long-job", ["cpu"])
    deployment.request_deployment_profile(alices_causal_adapter)
    for _ in range(settings.LAYERCAKE_MAX_SENDS + 1):
        backdate(alices_causal_adapter, "sent_at", settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1)
        recover()
    state = state_of(alices_causal_adapter)
    assert state["status"] == "queued" and state["sends"] == settings.LAYERCAKE_MAX_SENDS + 2
