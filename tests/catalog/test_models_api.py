"""GET /api/v1/models/ and /api/v1/models/{id}/ per API.md, with ownership."""

from __future__ import annotations

import uuid

import pytest

from webapp.catalog import importing
from webapp.catalog.models import CatalogModel, Kind

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared_base(tiny_bert_dir) -> CatalogModel:
    return importing.import_base_model(str(tiny_bert_dir), name="tiny-bert")


@pytest.fixture
def alices_adapter(shared_base, alice) -> CatalogModel:
    # A derived entry as the jobs app will register it: owned, linked to its parent.
    return CatalogModel.objects.create(
        owner=alice, name="alice-adapter", kind=Kind.ADAPTER, parent=shared_base, family=shared_base.family,
        task="classification", storage_prefix=f"models/{uuid.uuid4()}", size_bytes=1234,
    )


def test_list_has_the_contract_fields(api_alice, shared_base):
    body = api_alice.get("/api/v1/models/").json()
    assert len(body) == 1
    entry = body[0]
    assert {"id", "name", "kind", "parent", "tasks", "size_bytes", "created_at"} <= set(entry)
    assert entry["id"] == str(shared_base.id)
    assert entry["kind"] == "base" and entry["parent"] is None
    assert entry["parameter_count"] == shared_base.parameter_count


def test_detail_has_lineage_files_metrics_and_job(api_alice, shared_base, alices_adapter):
    body = api_alice.get(f"/api/v1/models/{alices_adapter.id}/").json()
    assert body["lineage"] == [str(shared_base.id), str(alices_adapter.id)]
    assert body["parent"] == str(shared_base.id)
    assert body["job"] is None
    assert body["metrics"] == {}
    base = api_alice.get(f"/api/v1/models/{shared_base.id}/").json()
    assert {f["name"] for f in base["files"]} >= {"config.json", "model.safetensors"}
    assert all(len(f["sha256"]) == 64 and f["size_bytes"] > 0 for f in base["files"])


def test_shared_base_models_are_visible_to_every_user(api_bob, shared_base):
    assert [m["id"] for m in api_bob.get("/api/v1/models/").json()] == [str(shared_base.id)]
    assert api_bob.get(f"/api/v1/models/{shared_base.id}/").status_code == 200


def test_another_users_model_is_404_and_not_listed(api_charlie, alices_adapter):
    response = api_charlie.get(f"/api/v1/models/{alices_adapter.id}/")
    assert response.status_code == 404
    assert "alice-adapter" not in response.content.decode()
    assert str(alices_adapter.id) not in [m["id"] for m in api_charlie.get("/api/v1/models/").json()]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "6f1c2b7e-0d4a-4f5e-9a3b-2c8d1e7f6a50"])  # a fixed, unknown id
def test_unknown_model_is_404_with_json_error(api_alice, bad_id):
    response = api_alice.get(f"/api/v1/models/{bad_id}/")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "details"}


def test_catalog_page_shows_tree_and_hides_others(client, bob, shared_base, alices_adapter):
    client.force_login(bob)
    page = client.get("/models/").content.decode()
    assert "tiny-bert" in page and "alice-adapter" not in page
    assert client.get(f"/models/{alices_adapter.id}/").status_code == 404


def test_model_page_shows_facts_and_files(client_alice, shared_base):
    page = client_alice.get(f"/models/{shared_base.id}/").content.decode()
    assert "BertModel" in page and "model.safetensors" in page
