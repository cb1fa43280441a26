"""One way to send background work: after commit, with its task id known, a broker failure reported."""

from __future__ import annotations

import pytest
from django.db import transaction
from kombu.exceptions import OperationalError

from webapp.lib.background import send_after_commit
from webapp.playground.tasks import forget_model

pytestmark = pytest.mark.django_db


def test_the_message_goes_only_when_the_transaction_commits(monkeypatch, django_capture_on_commit_callbacks):
    sent: list[dict] = []
    monkeypatch.setattr(forget_model, "apply_async", lambda **kwargs: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            task_id = send_after_commit(forget_model, ["m-1"], queue="inference")
            assert sent == []  # the row it names is not visible to a worker yet
    assert sent == [{"args": ["m-1"], "queue": "inference", "task_id": task_id}]
    assert len(task_id) == 36


def test_nothing_is_sent_when_the_transaction_rolls_back(monkeypatch, django_capture_on_commit_callbacks):
    sent: list[dict] = []
    monkeypatch.setattr(forget_model, "apply_async", lambda **kwargs: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            send_after_commit(forget_model, ["m-1"])
            raise RuntimeError("the request failed")
    assert sent == []


def test_without_a_queue_the_routes_decide(monkeypatch, django_capture_on_commit_callbacks):
    sent: list[dict] = []
    monkeypatch.setattr(forget_model, "apply_async", lambda **kwargs: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        send_after_commit(forget_model, ["m-1"])
    assert "queue" not in sent[0]


def test_an_unreachable_broker_is_reported_not_raised(monkeypatch, django_capture_on_commit_callbacks):
    def down(**kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("Error 111 connecting to localhost:6379. Connection refused.")

    monkeypatch.setattr(forget_model, "apply_async", down)
    reported: list[str] = []
    with django_capture_on_commit_callbacks(execute=True):
        send_after_commit(forget_model, ["m-1"], on_failure=reported.append)
    assert reported == ["OperationalError: Error 111 connecting to localhost:6379. Connection refused."]
