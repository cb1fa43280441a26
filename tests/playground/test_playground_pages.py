"""Playground pages: pick models and type an input; runs belong to their owner."""

from __future__ import annotations

import pytest

from webapp.playground import services
from webapp.playground.models import PlaygroundRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):  # type: ignore[no-untyped-def]
    sent: list[PlaygroundRun] = []
    monkeypatch.setattr(services, "send_run", sent.append)
    return sent


def test_opening_from_a_model_page_preselects_it_and_its_base(client_alice, causal_base, alices_causal_adapter):
    page = client_alice.get(f"/playground/?model={alices_causal_adapter.id}").content.decode()
    assert page.count("checked") == 2
    assert f'value="{causal_base.id}" checked' in page and f'value="{alices_causal_adapter.id}" checked' in page


def test_run_is_created_sent_and_its_page_polls_for_answers(client_alice, causal_base, alices_causal_adapter, no_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post("/playground/runs/", {"prompt": "Hello", "models": [str(causal_base.id), str(alices_causal_adapter.id)]})
    run = PlaygroundRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/playground/runs/{run.id}/"
    assert no_broker == [run]
    page = client_alice.get(response["Location"]).content.decode()
    assert f"/playground/runs/{run.id}/answers/" in page and "Waiting for an inference worker" in page


def test_others_cannot_see_a_run_or_use_a_private_model(client, charlie, alice, causal_base, alices_causal_adapter):
    run = services.start_run(alice, "secret question", [alices_causal_adapter])
    client.force_login(charlie)
    assert client.get(f"/playground/runs/{run.id}/").status_code == 404
    assert client.get(f"/playground/runs/{run.id}/answers/").status_code == 404
    assert client.get(f"/playground/?model={alices_causal_adapter.id}").status_code == 404
    assert client.post("/playground/runs/", {"prompt": "hi", "models": [str(alices_causal_adapter.id)]}).status_code == 404
    assert "alice-chat-lora" not in client.get("/playground/").content.decode()


def test_an_empty_input_is_shown_back_with_the_reason(client_alice, causal_base):
    response = client_alice.post("/playground/runs/", {"prompt": " ", "models": [str(causal_base.id)]})
    assert response.status_code == 400 and "Type an input" in response.content.decode()
