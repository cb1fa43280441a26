"""A real Celery worker on the `inference` queue answers a playground run sent from the page."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from webapp.playground.models import PlaygroundRun, Status

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_run_sent_from_the_page_is_answered_by_the_inference_worker(client, alice, causal_base, alices_causal_adapter, start_worker):
    start_worker(queues="inference")
    client.force_login(alice)
    client.post("/playground/runs/", {"prompt": "What is the capital of France?", "models": [str(causal_base.id), str(alices_causal_adapter.id)]})
    run = PlaygroundRun.objects.get()
    wait_for(lambda: PlaygroundRun.objects.get(pk=run.pk).is_final, timeout=120, message="the inference worker never answered")
    run.refresh_from_db()
    assert run.status == Status.DONE, run.failure_reason
    assert all(answer["status"] == "done" and answer["text"] for answer in run.answers)
    assert "adapter applied at inference" in run.answers[1]["mode"]
    page = client.get(f"/playground/runs/{run.pk}/answers/").content.decode()
    assert "Served as" in page and "hx-get" not in page  # final: the partial stops polling
