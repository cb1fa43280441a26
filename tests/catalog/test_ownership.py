"""Every model endpoint and download answers 404 for another user's model, and leaks nothing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

API_ENDPOINTS = [
    ("get", "/api/v1/models/{id}/"),
    ("get", "/api/v1/models/{id}/download/"),
    ("get", "/api/v1/models/{id}/files/adapter_config.json"),
    ("post", "/api/v1/models/{id}/merge/"),
    ("post", "/api/v1/models/{id}/profile/"),
]
PAGES = [
    ("get", "/models/{id}/"),
    ("get", "/models/{id}/download/"),
    ("get", "/models/{id}/files/adapter_config.json"),
    ("post", "/models/{id}/merge/"),
    ("post", "/models/{id}/profile/"),
    ("get", "/models/{id}/deployment/"),
]


@pytest.mark.parametrize(("method", "url"), API_ENDPOINTS)
def test_api_endpoints_are_404_for_an_outsider(api_charlie, alices_causal_adapter, method, url):
    response = getattr(api_charlie, method)(url.format(id=alices_causal_adapter.id))
    assert response.status_code == 404
    assert "alice-chat-lora" not in response.content.decode(errors="replace")


@pytest.mark.parametrize(("method", "url"), PAGES)
def test_pages_are_404_for_an_outsider(client, charlie, alices_causal_adapter, method, url):
    client.force_login(charlie)
    response = getattr(client, method)(url.format(id=alices_causal_adapter.id))
    assert response.status_code == 404


@pytest.mark.parametrize(("method", "url"), API_ENDPOINTS)
def test_the_owner_is_not_refused(api_alice, alices_causal_adapter, method, url, monkeypatch):
    from webapp.catalog import tasks

    monkeypatch.setattr(tasks.profile_deployment, "apply_async", lambda *args, **kwargs: None)
    monkeypatch.setattr("jobs.services.enqueue", lambda job: None, raising=False)
    response = getattr(api_alice, method)(url.format(id=alices_causal_adapter.id))
    assert response.status_code in (200, 202)
