"""Uploads over LAYERCAKE_MAX_UPLOAD_MB get a 413 with a JSON error, checked before and while streaming."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import encode_multipart

from tests.datasets.conftest import upload
from webapp.datasets.models import Dataset

pytestmark = pytest.mark.django_db

BOUNDARY = "BoUnDaRy"


def multipart(size: int) -> bytes:
    return encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("big.csv", b"text\n" + b"a" * size)})


def test_declared_content_length_over_the_limit_is_413_before_reading(api_alice, settings):
    settings.LAYERCAKE_MAX_UPLOAD_MB = 1
    body = multipart(100)
    response = api_alice.generic(
        "POST", "/api/v1/datasets/", body, content_type=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(3 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert "upload limit" in response.json()["error"]
    assert response.json()["details"] == []


def test_file_bigger_than_the_limit_while_streaming_is_413(api_alice, settings):
    settings.LAYERCAKE_MAX_UPLOAD_MB = 1
    response = api_alice.post("/api/v1/datasets/", {"file": upload("big.csv", b"text\n" + b"a" * (1024 * 1024 + 10))}, format="multipart")
    assert response.status_code == 413
    assert not Dataset.objects.exists()


def test_browser_upload_over_the_limit_is_413_json_for_xhr(client_alice, settings):
    settings.LAYERCAKE_MAX_UPLOAD_MB = 1
    response = client_alice.post(
        "/datasets/upload/", {"file": upload("big.csv", b"text\n" + b"a" * (2 * 1024 * 1024))}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 413
    assert response.json()["error"].startswith("The file is larger than the 1 MB upload limit")


def test_upload_under_the_limit_is_accepted_and_django_spools_it_to_disk(api_alice, settings):
    settings.LAYERCAKE_MAX_UPLOAD_MB = 1
    assert settings.FILE_UPLOAD_MAX_MEMORY_SIZE <= 4 * 1024 * 1024
    response = api_alice.post("/api/v1/datasets/", {"file": upload("ok.csv", "text\n" + "a\n" * 1000)}, format="multipart")
    assert response.status_code == 201


def test_the_form_without_javascript_over_the_limit_is_a_413_page_not_a_500(client_alice, settings):
    settings.LAYERCAKE_MAX_UPLOAD_MB = 1
    response = client_alice.post("/datasets/upload/", {"file": upload("big.csv", b"text\n" + b"a" * (2 * 1024 * 1024))})
    assert response.status_code == 413
    assert "larger than the 1 MB upload limit" in response.content.decode()
