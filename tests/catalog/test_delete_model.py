"""Deleting a model (API and page): owner only, refused while something depends on it, nothing half-deleted."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from jobs.models import Job, Status
from webapp.catalog import services
from webapp.catalog.models import CatalogModel, Kind

pytestmark = pytest.mark.django_db


def stored_model(owner, name: str = "alice-lora", kind: str = Kind.ADAPTER, parent=None) -> CatalogModel:  # type: ignore[no-untyped-def]
    """A catalog row with small real files in storage: the bookkeeping under test needs no weights."""
    model_id = uuid.uuid4()
    prefix = f"models/{model_id}"
    contents = {"adapter_config.json": b"{}", "adapter_model.safetensors": b"\0" * 2048}
    files = []
    for name_in_folder, data in contents.items():
        default_storage.save(f"{prefix}/{name_in_folder}", ContentFile(data))
        files.append({"name": name_in_folder, "size_bytes": len(data), "sha256": "0" * 64})
    return CatalogModel.objects.create(
        id=model_id, owner=owner, name=name, kind=kind, parent=parent, family="causal_lm", storage_prefix=prefix,
        files=files, size_bytes=sum(len(d) for d in contents.values()), task="sft",
    )


def stored_paths(model: CatalogModel) -> list[Path]:
    return [Path(default_storage.path(f"{model.storage_prefix}/{entry['name']}")) for entry in model.files]


@pytest.fixture
def shared_base():  # type: ignore[no-untyped-def]
    return stored_model(None, name="shared-base", kind=Kind.BASE)


@pytest.fixture
def adapter(alice, shared_base):  # type: ignore[no-untyped-def]
    return stored_model(alice, parent=shared_base)


def job_on(owner, base, status: str, result=None) -> Job:  # type: ignore[no-untyped-def]
    return Job.objects.create(owner=owner, base_model=base, method="lora", task="sft", status=status, result_model=result)


def test_api_delete_removes_the_row_its_files_and_its_cache(api_alice, adapter, django_capture_on_commit_callbacks):
    paths = stored_paths(adapter)
    cache = Path(settings.LAYERCAKE_CACHE) / "models" / str(adapter.pk)
    cache.mkdir(parents=True)
    (cache / "config.json").write_text("{}")
    assert all(path.exists() for path in paths)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"/api/v1/models/{adapter.pk}/")
    assert response.status_code == 204
    assert not CatalogModel.objects.filter(pk=adapter.pk).exists()
    assert not any(path.exists() for path in paths)
    assert not paths[0].parent.exists() and not cache.exists()


def test_files_already_gone_do_not_stop_the_delete(api_alice, adapter, django_capture_on_commit_callbacks):
    for path in stored_paths(adapter):
        path.unlink()
    with django_capture_on_commit_callbacks(execute=True):
        assert api_alice.delete(f"/api/v1/models/{adapter.pk}/").status_code == 204
    assert not CatalogModel.objects.filter(pk=adapter.pk).exists()


def test_others_models_and_shared_bases_are_404_and_stay(api_bob, api_alice, adapter, shared_base):
    assert api_bob.delete(f"/api/v1/models/{adapter.pk}/").status_code == 404
    # A shared base is visible to all and deletable by nobody through the app: 404, as for a missing id.
    assert api_alice.delete(f"/api/v1/models/{shared_base.pk}/").status_code == 404
    assert api_alice.delete(f"/api/v1/models/{uuid.uuid4()}/").status_code == 404
    assert CatalogModel.objects.filter(pk__in=[adapter.pk, shared_base.pk]).count() == 2
    assert all(path.exists() for path in stored_paths(adapter))


def test_a_derived_model_blocks_the_delete_with_409_naming_it(api_alice, alice, adapter, django_capture_on_commit_callbacks):
    stored_model(alice, name="alice-lora (merged)", kind=Kind.MERGED, parent=adapter)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api_alice.delete(f"/api/v1/models/{adapter.pk}/")
    assert response.status_code == 409
    body = response.json()
    assert "alice-lora (merged)" in body["error"] and "delete it first" in body["error"]
    assert body["details"][0]["field"] == "model"
    assert callbacks == [] and CatalogModel.objects.filter(pk=adapter.pk).exists()
    assert all(path.exists() for path in stored_paths(adapter))


@pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING, Status.RETRYING])
def test_an_unfinished_job_on_it_blocks_the_delete(api_alice, alice, status, django_capture_on_commit_callbacks):
    base = stored_model(alice, name="my-base", kind=Kind.BASE)
    job = job_on(alice, base, status)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"/api/v1/models/{base.pk}/")
    assert response.status_code == 409
    assert f"lora job {str(job.pk)[:8]} ({status}) uses it as its base" in response.json()["error"]
    assert CatalogModel.objects.filter(pk=base.pk).exists() and all(p.exists() for p in stored_paths(base))


def test_finished_jobs_keep_their_history_and_show_the_model_deleted(client_alice, api_alice, alice, adapter,
                                                                      django_capture_on_commit_callbacks):
    base = stored_model(alice, name="my-base", kind=Kind.BASE)
    used = job_on(alice, base, Status.FAILED)
    made = job_on(alice, adapter.parent, Status.SUCCEEDED, result=adapter)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_alice.delete(f"/api/v1/models/{adapter.pk}/").status_code == 204
        assert api_alice.delete(f"/api/v1/models/{base.pk}/").status_code == 204
    used.refresh_from_db()
    made.refresh_from_db()
    assert used.status == Status.FAILED and used.base_model is None
    assert made.status == Status.SUCCEEDED and made.result_model is None
    page = client_alice.get(f"/jobs/{made.pk}/")
    assert page.status_code == 200 and "result-model-deleted" in page.content.decode()
    page = client_alice.get(f"/jobs/{used.pk}/")
    assert page.status_code == 200 and "a model since deleted" in page.content.decode()
    assert client_alice.get("/jobs/").status_code == 200
    assert api_alice.get(f"/api/v1/jobs/{used.pk}/").json()["base_model"] is None
    retried = api_alice.post(f"/api/v1/jobs/{used.pk}/retry/")
    assert retried.status_code == 409 and "was deleted" in retried.json()["error"]


def test_page_asks_for_confirmation_then_deletes(client_alice, adapter, django_capture_on_commit_callbacks):
    detail = client_alice.get(f"/models/{adapter.pk}/").content.decode()
    assert f"/models/{adapter.pk}/delete/" in detail
    confirm = client_alice.get(f"/models/{adapter.pk}/delete/")
    assert confirm.status_code == 200 and "Delete for good" in confirm.content.decode()
    assert CatalogModel.objects.filter(pk=adapter.pk).exists()  # looking at the question deletes nothing
    with django_capture_on_commit_callbacks(execute=True):
        response = client_alice.post(f"/models/{adapter.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/models/"
    assert not CatalogModel.objects.filter(pk=adapter.pk).exists()
    assert not any(path.exists() for path in stored_paths(adapter))


def test_page_refuses_with_409_and_names_what_depends_on_it(client_alice, alice, adapter):
    stored_model(alice, name="child-of-lora", kind=Kind.MERGED, parent=adapter)
    confirm = client_alice.get(f"/models/{adapter.pk}/delete/").content.decode()
    assert "child-of-lora" in confirm and "Delete for good" not in confirm
    response = client_alice.post(f"/models/{adapter.pk}/delete/")
    assert response.status_code == 409 and "child-of-lora" in response.content.decode()
    assert CatalogModel.objects.filter(pk=adapter.pk).exists()


def test_page_delete_is_owner_only(client, bob, alice, adapter, shared_base):
    client.force_login(bob)
    assert client.get(f"/models/{adapter.pk}/delete/").status_code == 404
    assert client.post(f"/models/{adapter.pk}/delete/").status_code == 404
    client.force_login(alice)
    assert client.post(f"/models/{shared_base.pk}/delete/").status_code == 404
    assert "/delete/" not in client.get(f"/models/{shared_base.pk}/").content.decode()
    assert CatalogModel.objects.filter(pk__in=[adapter.pk, shared_base.pk]).count() == 2


def test_a_rolled_back_delete_leaves_every_file(alice, adapter, django_capture_on_commit_callbacks, monkeypatch):
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    monkeypatch.setattr(CatalogModel, "delete", refuse)
    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        services.delete_model(adapter)
    assert callbacks == [] and all(path.exists() for path in stored_paths(adapter))


def test_the_resident_pool_forgets_a_deleted_model():
    from webapp.playground.resident import Group, ResidentModels

    class PeftLike:
        def __init__(self) -> None:
            self.deleted: list[str] = []

        def delete_adapter(self, name: str) -> None:
            self.deleted.append(name)

    pool = ResidentModels()
    shared = PeftLike()
    pool.groups["base-1|sft"] = Group("base-1|sft", shared, None, "sft")
    pool.groups["base-1|sft"].adapters.update({"lora-a": "adapter_a", "lora-b": "adapter_b"})
    pool.groups["full-9|plain"] = Group("full-9|plain", object(), None, "sft")
    assert pool.forget("lora-a") and shared.deleted == ["adapter_a"]
    assert list(pool.groups["base-1|sft"].adapters) == ["lora-b"]
    assert pool.forget("full-9") and "full-9|plain" not in pool.groups
    assert not pool.forget("never-loaded")
