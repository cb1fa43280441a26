"""Renaming a model: from its page or with PATCH on the API; owner-only, checked, nothing else changes."""

from __future__ import annotations

import pytest

from webapp.catalog.models import CatalogModel

pytestmark = pytest.mark.django_db


def test_owner_renames_from_the_model_page(client_alice, alices_causal_adapter):
    page = client_alice.get(f"/models/{alices_causal_adapter.id}/").content.decode()
    assert f'action="/models/{alices_causal_adapter.id}/rename/"' in page
    response = client_alice.post(f"/models/{alices_causal_adapter.id}/rename/", {"name": "  support   bot v2 "})
    assert response.status_code == 302 and response["Location"] == f"/models/{alices_causal_adapter.id}/"
    renamed = CatalogModel.objects.get(pk=alices_causal_adapter.pk)
    assert renamed.name == "support bot v2"
    assert renamed.files == alices_causal_adapter.files and renamed.storage_prefix == alices_causal_adapter.storage_prefix
    assert "<h1>support bot v2" in client_alice.get(response["Location"]).content.decode()


@pytest.mark.parametrize(("name", "reason"), [("   ", "cannot be empty"), ("x" * 201, "at most 200 characters")])
def test_a_bad_name_from_the_page_is_a_400_with_the_reason_and_nothing_changes(client_alice, alices_causal_adapter, name, reason):
    response = client_alice.post(f"/models/{alices_causal_adapter.id}/rename/", {"name": name})
    assert response.status_code == 400 and reason in response.content.decode()
    assert CatalogModel.objects.get(pk=alices_causal_adapter.pk).name == "alice-chat-lora"


def test_api_patch_renames_and_answers_the_model(api_alice, alices_causal_adapter):
    response = api_alice.patch(f"/api/v1/models/{alices_causal_adapter.id}/", {"name": "chat v2"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "chat v2" and response.json()["id"] == str(alices_causal_adapter.id)
    assert api_alice.get(f"/api/v1/models/{alices_causal_adapter.id}/").json()["name"] == "chat v2"


@pytest.mark.parametrize(("body", "reason"), [
    ({"name": ""}, "cannot be empty"),
    ({"name": "y" * 300}, "at most 200 characters"),
    ({"name": 7}, "is text"),
    ({}, "Send the new name"),
    ({"name": "ok", "kind": "full"}, "Only the name"),
])
def test_api_patch_refuses_bad_input_with_a_json_400(api_alice, alices_causal_adapter, body, reason):
    response = api_alice.patch(f"/api/v1/models/{alices_causal_adapter.id}/", body, format="json")
    assert response.status_code == 400
    assert reason in response.json()["error"] and response.json()["details"]
    assert CatalogModel.objects.get(pk=alices_causal_adapter.pk).name == "alice-chat-lora"


def test_others_and_shared_bases_cannot_be_renamed(api_charlie, client, charlie, alices_causal_adapter, causal_base):
    assert api_charlie.patch(f"/api/v1/models/{alices_causal_adapter.id}/", {"name": "mine"}, format="json").status_code == 404
    client.force_login(charlie)
    assert client.post(f"/models/{alices_causal_adapter.id}/rename/", {"name": "mine"}).status_code == 404
    # A shared base is visible to everyone and renamable by no one: no form, and 404 when tried.
    assert client.post(f"/models/{causal_base.id}/rename/", {"name": "mine"}).status_code == 404
    assert api_charlie.patch(f"/api/v1/models/{causal_base.id}/", {"name": "mine"}, format="json").status_code == 404
    assert "/rename/" not in client.get(f"/models/{causal_base.id}/").content.decode()
    assert CatalogModel.objects.get(pk=alices_causal_adapter.pk).name == "alice-chat-lora"
    assert CatalogModel.objects.get(pk=causal_base.pk).name == "tiny-llama"


def test_schema_documents_the_rename(api_alice):
    schema = api_alice.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "patch" in schema["paths"]["/api/v1/models/{id}/"]
