"""POST/GET/DELETE /api/v1/datasets/ as API.md writes them."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from tests.datasets.conftest import upload
from webapp.datasets import services
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.django_db

FIELDS = {"id", "name", "status", "task", "rows", "columns", "errors", "profile", "created_at"}


def post(api, filename="data.csv", content="text,label\na,x\nb,y\n", **fields):
    return api.post("/api/v1/datasets/", {"file": upload(filename, content), **fields}, format="multipart")


def test_upload_answers_201_uploaded_then_detail_shows_ready_with_profile(api_alice):
    response = post(api_alice, name="Reviews")
    assert response.status_code == 201
    body = response.json()
    assert FIELDS <= set(body)
    assert (body["name"], body["status"]) == ("Reviews", "uploaded")
    services.check_dataset(Dataset.objects.get(pk=body["id"]))
    detail = api_alice.get(f"/api/v1/datasets/{body['id']}/").json()
    assert (detail["status"], detail["task"], detail["rows"], detail["columns"]) == ("ready", "classification", 2, ["text", "label"])
    assert detail["errors"] == []
    assert detail["profile"]["labels"]["counts"] == {"x": 1, "y": 1}


def test_upload_sends_the_check_after_commit(api_alice, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    from webapp.datasets import tasks

    monkeypatch.setattr(tasks.check_dataset, "apply_async", lambda args, task_id: sent.append((args, task_id)))
    with django_capture_on_commit_callbacks(execute=True):
        body = post(api_alice).json()
    assert sent == [([body["id"]], Dataset.objects.get(pk=body["id"]).task_id)]


def test_list_is_newest_first_and_only_mine(api_alice, api_bob):
    first = post(api_alice, name="first").json()["id"]
    second = post(api_alice, name="second").json()["id"]
    post(api_bob, name="bob's")
    assert [item["id"] for item in api_alice.get("/api/v1/datasets/").json()] == [second, first]


def test_others_dataset_is_404_for_get_and_delete(api_alice, api_bob):
    dataset_id = post(api_alice).json()["id"]
    assert api_bob.get(f"/api/v1/datasets/{dataset_id}/").status_code == 404
    assert api_bob.delete(f"/api/v1/datasets/{dataset_id}/").status_code == 404
    assert Dataset.objects.filter(pk=dataset_id).exists()


def test_delete_removes_every_file(api_alice):
    dataset_id = post(api_alice).json()["id"]
    dataset = services.check_dataset(Dataset.objects.get(pk=dataset_id))
    names = [dataset.source_file, *dataset.normalized_files().values()]
    assert all(default_storage.exists(name) for name in names) and len(names) == 2
    assert api_alice.delete(f"/api/v1/datasets/{dataset_id}/").status_code == 204
    assert not any(default_storage.exists(name) for name in names)
    assert not default_storage.exists(f"datasets/{dataset_id}")


def test_invalid_dataset_lists_reason_then_row_errors(api_alice):
    body = post(api_alice, content="text,label\na,x\n,y\n").json()
    services.check_dataset(Dataset.objects.get(pk=body["id"]))
    errors = api_alice.get(f"/api/v1/datasets/{body['id']}/").json()["errors"]
    assert errors[0]["row"] is None and "1 problem" in errors[0]["message"]
    assert errors[1] == {"row": 2, "field": "text", "message": "`text` is empty"}


def test_unknown_task_is_400_with_error_and_details(api_alice):
    response = post(api_alice, task="astrology")
    assert response.status_code == 400
    assert set(response.json()) == {"error", "details"}
    assert not Dataset.objects.exists()


def test_missing_file_is_400(api_alice):
    response = api_alice.post("/api/v1/datasets/", {"name": "nothing"}, format="multipart")
    assert response.status_code == 400
    assert "No file was uploaded" in response.json()["error"]


def test_anonymous_upload_is_401():
    from rest_framework.test import APIClient

    assert APIClient().post("/api/v1/datasets/", {"file": upload("a.csv", "text\na\n")}, format="multipart").status_code == 401


def test_revalidate_with_a_mapping_makes_an_unknown_shape_ready(api_alice):
    body = post(api_alice, content="prompt,completion\nhi,hello\nbye,ciao\n").json()
    dataset = services.check_dataset(Dataset.objects.get(pk=body["id"]))
    assert dataset.status == "invalid"
    response = api_alice.post(
        f"/api/v1/datasets/{body['id']}/revalidate/",
        {"mapping": {"instruction": "Prompt", "output": "completion"}},
        format="json",
    )
    assert response.status_code == 202
    assert response.json()["status"] == "uploaded"
    dataset = services.check_dataset(Dataset.objects.get(pk=body["id"]))
    assert (dataset.status, dataset.shape) == ("ready", "instruction")


def test_revalidate_while_checking_is_409(api_alice):
    body = post(api_alice).json()
    Dataset.objects.get(pk=body["id"]).begin_check()
    response = api_alice.post(f"/api/v1/datasets/{body['id']}/revalidate/", {"task": "text"}, format="json")
    assert response.status_code == 409


def test_revalidate_with_unknown_target_column_is_400(api_alice):
    body = post(api_alice).json()
    response = api_alice.post(f"/api/v1/datasets/{body['id']}/revalidate/", {"mapping": {"evil": "text"}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]


def test_schema_documents_the_dataset_endpoints(api_alice):
    schema = api_alice.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert b"/api/v1/datasets/{id}/" in schema.content


def test_api_rejects_a_json_body_with_415_json(api_alice):
    response = api_alice.post("/api/v1/datasets/", {"file": "not a file"}, format="json")
    assert response.status_code == 415
    assert response.json()["error"]


def test_declared_task_shows_before_the_check(api_alice):
    body = post(api_alice, task="classification").json()
    assert body["task"] == "classification"


def test_the_dataset_list_comes_in_pages_like_the_job_list(api_alice, alice):
    from webapp.datasets.models import Dataset

    for index in range(3):
        Dataset.objects.create(owner=alice, name=f"d{index}", file_format="csv", source_file=f"x{index}")
    response = api_alice.get("/api/v1/datasets/?limit=2")
    assert response.status_code == 200 and len(response.json()) == 2
    assert response["X-Total-Count"] == "3"
    assert 'rel="next"' in response["Link"]
    assert len(api_alice.get("/api/v1/datasets/?limit=2&offset=2").json()) == 1
