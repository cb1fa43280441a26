"""A GGUF export takes room in its owner's quota: refused (413) at submit when it would not fit, refused again on the
worker before anything is stored, and a new export of a type replaces the older one instead of piling up."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from jobs import runner, services
from jobs.exporting import expected_export_bytes
from jobs.models import Job, Kind, Status
from webapp.accounts import quota
from webapp.catalog.models import CatalogModel
from webapp.catalog.models import Kind as ModelKind
from webapp.lib.storage import stored_names

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("jobs.services.enqueue", lambda job: None)


def leave_free(owner: Any, settings: Any, free: int) -> None:
    """A 10 MB quota with `free` bytes of it left: a model row of the owner's takes the rest."""
    settings.LAYERCAKE_USER_QUOTA_MB = 10
    model_id = uuid.uuid4()
    filler = 10 * quota.MB - quota.usage_of(owner).total - free
    CatalogModel.objects.create(
        id=model_id, owner=owner, name="filler", kind=ModelKind.BASE, family="causal_lm", storage_prefix=f"models/{model_id}",
        size_bytes=filler, files=[{"name": "model.safetensors", "size_bytes": filler, "sha256": ""}], task="sft",
    )
    assert quota.free_bytes(owner) == free


def stored_export(owner: Any, model: CatalogModel, output_type: str, size: int) -> Job:
    """A proven export already in storage, as the runner leaves one."""
    job = Job.objects.create(
        owner=owner, kind=Kind.EXPORT, base_model=model, method="export", task="sft", queue="cpu",
        hyperparameters={"type": output_type},
    )
    assert job.start("cpu@test")
    prefix = f"{model.storage_prefix}/gguf/{job.pk}"
    files = []
    for name, length in ((f"old-{output_type}.gguf", size), ("Modelfile", 20)):
        default_storage.save(f"{prefix}/{name}", ContentFile(b"g" * length))
        files.append({"name": name, "size_bytes": length, "sha256": ""})
    assert job.succeed(None, {}, {"gguf": {"type": output_type, "files": files, "prefix": prefix}})
    return job


def run_in_process(job: Job) -> Job:
    assert job.start("test-worker@here")
    runner.execute(job)
    job.refresh_from_db()
    return job


def test_the_expected_size_is_the_weights_written_at_the_types_width(alices_causal_adapter):
    weights = alices_causal_adapter.lineage()[0].parameter_count
    assert expected_export_bytes(alices_causal_adapter, "f16") == 2 * weights
    assert expected_export_bytes(alices_causal_adapter, "q8_0") == weights * 34 // 32  # 32 int8 and an f16 scale a block


def test_an_export_that_would_pass_the_quota_is_a_413_at_submit_and_no_job(api_alice, alice, alices_causal_adapter, settings):
    leave_free(alice, settings, expected_export_bytes(alices_causal_adapter, "f16") - 1)
    response = api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/export/", {"type": "f16"}, format="json")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error.startswith("This f16 GGUF export") and "storage quota" in error and "/account/" in error
    assert not Job.objects.filter(kind=Kind.EXPORT).exists()
    # q8_0 is about half the size: it fits.
    assert api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/export/", {"type": "q8_0"}, format="json").status_code == 202


def test_the_export_it_replaces_makes_room_for_a_new_one(alice, alices_causal_adapter, settings):
    stored_export(alice, alices_causal_adapter, "f16", expected_export_bytes(alices_causal_adapter, "f16"))
    leave_free(alice, settings, 1000)
    assert services.start_export(alices_causal_adapter, alice, "f16").kind == Kind.EXPORT
    with pytest.raises(quota.QuotaExceeded):  # another type replaces nothing
        services.start_export(alices_causal_adapter, alice, "q8_0")


def test_the_worker_stores_nothing_when_the_quota_filled_up_meanwhile(alice, alices_causal_adapter, settings):
    job = services.start_export(alices_causal_adapter, alice, "f16")
    leave_free(alice, settings, 1000)  # other uploads took the room while the job waited
    job = run_in_process(job)
    assert job.status == Status.FAILED and job.failure_reason == "invalid"
    assert job.error.startswith("This f16 GGUF export") and "storage quota" in job.error
    assert stored_names(f"{alices_causal_adapter.storage_prefix}/gguf") == []


def test_a_new_export_of_a_type_replaces_the_older_one_in_storage_and_in_the_quota(alice, alices_causal_adapter):
    older = stored_export(alice, alices_causal_adapter, "f16", 100_000)
    other_type = stored_export(alice, alices_causal_adapter, "q8_0", 60_000)
    job = run_in_process(services.start_export(alices_causal_adapter, alice, "f16"))
    assert job.status == Status.SUCCEEDED, job.error
    assert stored_names(older.summary["gguf"]["prefix"]) == []
    older.refresh_from_db()
    assert older.summary["gguf"]["files"] == [] and older.summary["gguf"]["replaced_by"] == str(job.pk)
    assert len(stored_names(other_type.summary["gguf"]["prefix"])) == 2
    new_files = sum(entry["size_bytes"] for entry in job.summary["gguf"]["files"])
    assert quota.usage_of(alice).exports == new_files + 60_020
