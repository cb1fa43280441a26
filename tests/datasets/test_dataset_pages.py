"""The Datasets pages: list with the upload form, the profile page, settings (mapping) and delete."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import ingest_and_check, upload
from webapp.datasets import services
from webapp.datasets.models import Dataset, Status

pytestmark = pytest.mark.django_db


def test_list_page_has_the_upload_form_with_progress_script(client_alice):
    page = client_alice.get("/datasets/").content.decode()
    assert 'id="upload-form"' in page and 'enctype="multipart/form-data"' in page
    assert "datasets/upload.js" in page and "datasets/datasets.css" in page


def test_plain_form_upload_redirects_to_the_dataset_page(client_alice, alice):
    response = client_alice.post("/datasets/upload/", {"file": upload("notes.txt", "hello\n"), "max_length": 1024})
    dataset = Dataset.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/datasets/{dataset.id}/"
    assert dataset.status == Status.UPLOADED


def test_xhr_upload_answers_json_with_the_page_url(client_alice, alice):
    response = client_alice.post(
        "/datasets/upload/", {"file": upload("notes.txt", "hello\n"), "max_length": 1024}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 201
    assert response.json()["url"] == f"/datasets/{Dataset.objects.get(owner=alice).id}/"


def test_xhr_upload_of_an_unsupported_type_answers_400_json(client_alice):
    response = client_alice.post("/datasets/upload/", {"file": upload("x.exe", b"MZ"), "max_length": 1024}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("Unsupported file type .exe")


def test_upload_needs_the_csrf_token(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/datasets/upload/", {"file": upload("notes.txt", "hello\n"), "max_length": 1024})
    assert response.status_code == 403
    assert not Dataset.objects.exists()


def test_ready_page_shows_profile_and_escapes_html_in_previews(client_alice, alice):
    dataset = ingest_and_check(alice, "x.csv", "instruction,output\n<script>alert(1)</script>,ok\nq,a\n")
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert 'id="dataset-profile"' in page and "Ready" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_invalid_page_lists_row_errors(client_alice, alice):
    dataset = ingest_and_check(alice, "x.csv", "text,label\na,x\nb,\n")
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert "`label` is empty" in page and "Invalid" in page


def test_page_polls_while_checking_and_stops_when_final(client_alice, alice):
    dataset = services.ingest(upload("a.txt", "hi\n"), alice)
    assert 'hx-trigger="every 2s"' in client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    services.check_dataset(dataset)
    partial = client_alice.get(f"/datasets/{dataset.id}/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial and "Ready" in partial


def test_settings_form_maps_columns_and_checks_again(client_alice, alice):
    dataset = ingest_and_check(alice, "x.csv", "question,answer\nq,a\n")
    assert dataset.status == Status.INVALID
    response = client_alice.post(
        f"/datasets/{dataset.id}/settings/",
        {"map_instruction": "question", "map_output": "answer", "max_length": 512, "validation_fraction": 0},
    )
    assert response.status_code == 302
    dataset.refresh_from_db()
    assert (dataset.status, dataset.column_mapping, dataset.max_length) == (Status.UPLOADED, {"instruction": "question", "output": "answer"}, 512)
    assert services.check_dataset(dataset).status == Status.READY


def test_delete_button_removes_the_dataset(client_alice, alice):
    dataset = ingest_and_check(alice, "a.txt", "hi\n")
    assert client_alice.post(f"/datasets/{dataset.id}/delete/").status_code == 302
    assert not Dataset.objects.exists()


def test_others_dataset_page_is_404(client, bob, alice):
    dataset = ingest_and_check(alice, "a.txt", "hi\n")
    client.force_login(bob)
    assert client.get(f"/datasets/{dataset.id}/").status_code == 404
    assert client.post(f"/datasets/{dataset.id}/delete/").status_code == 404
    assert client.post(f"/datasets/{dataset.id}/settings/", {"max_length": 100}).status_code == 404


def test_classification_preview_shows_the_label_next_to_the_text(client_alice, alice):
    dataset = ingest_and_check(alice, "x.csv", "text,label\ngreat film,positive\nawful,negative\n")
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert "<pre>great film</pre>" in page
    assert "<dt>label</dt><dd>positive</dd>" in page


def test_plain_form_upload_needs_only_the_file(client_alice, alice):
    response = client_alice.post("/datasets/upload/", {"file": upload("notes.txt", "hello\n")})
    assert response.status_code == 302
    assert Dataset.objects.get(owner=alice).max_length == 1024
