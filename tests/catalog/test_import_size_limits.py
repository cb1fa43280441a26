"""Model imports over LAYERCAKE_MAX_UPLOAD_MB are a 413 on the declared Content-Length, before the body is read,
and while it streams: never read whole, then refused."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import encode_multipart

from webapp.catalog import importing
from webapp.catalog.models import CatalogModel

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
BOUNDARY = "BoUnDaRy"


@pytest.fixture
def one_mb_limit(settings, monkeypatch):  # type: ignore[no-untyped-def]
    settings.LAYERCAKE_MAX_UPLOAD_MB = 1

    def must_not_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the import ran on a body over the limit")

    monkeypatch.setattr(importing, "import_upload", must_not_run)


def body(size: int) -> bytes:
    return encode_multipart(BOUNDARY, {"kind": "base", "file": SimpleUploadedFile("m.zip", b"z" * size)})


def test_api_declared_content_length_over_the_limit_is_413_before_reading(api_alice, one_mb_limit):
    response = api_alice.generic(
        "POST", "/api/v1/models/import/", body(100), content_type=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(2250 * MB),
    )
    assert response.status_code == 413
    assert response.json()["error"].startswith("The file is larger than the 1 MB upload limit")


def test_page_declared_content_length_over_the_limit_is_a_413_page(client_alice, one_mb_limit):
    response = client_alice.generic(
        "POST", "/models/import/", body(100), content_type=f"multipart/form-data; boundary={BOUNDARY}",
        CONTENT_LENGTH=str(2250 * MB),
    )
    assert response.status_code == 413
    assert "larger than the 1 MB upload limit" in response.content.decode()


def test_api_body_streamed_past_the_limit_is_413_and_nothing_is_stored(api_alice, one_mb_limit):
    before = CatalogModel.objects.count()
    response = api_alice.generic(
        "POST", "/api/v1/models/import/", body(MB + MB // 2), content_type=f"multipart/form-data; boundary={BOUNDARY}"
    )
    assert response.status_code == 413 and "upload limit" in response.json()["error"]
    assert CatalogModel.objects.count() == before


def test_page_body_streamed_past_the_limit_is_413(client_alice, one_mb_limit):
    response = client_alice.post("/models/import/", {"kind": "base", "file": SimpleUploadedFile("m.zip", b"z" * (MB + MB // 2))})
    assert response.status_code == 413 and "upload limit" in response.content.decode()


def test_the_import_page_still_checks_csrf(client, alice):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = browser.post("/models/import/", {"kind": "base", "file": SimpleUploadedFile("m.zip", b"z")})
    assert response.status_code == 403
