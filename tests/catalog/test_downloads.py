"""Downloads: a streamed zip in the save_pretrained layout whose files match their sha256; single files too."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import uuid
import zipfile

import pytest
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from webapp.catalog import downloads
from webapp.catalog.models import CatalogModel, Kind

pytestmark = pytest.mark.django_db


def test_adapter_zip_streams_the_save_pretrained_layout_and_checksums_match(api_alice, alices_causal_adapter):
    response = api_alice.get(f"/api/v1/models/{alices_causal_adapter.id}/download/")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    assert 'filename="alice-chat-lora.zip"' in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    names = set(archive.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= names
    for entry in alices_causal_adapter.files:
        assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == entry["sha256"]
    assert archive.getinfo("adapter_model.safetensors").compress_type == zipfile.ZIP_STORED


def test_zip_of_a_large_file_streams_in_constant_memory(alice, tmp_path):
    size = 64 * 1024 * 1024
    prefix = f"models/{uuid.uuid4()}"
    block = hashlib.sha256(b"x").digest() * (1 << 15)  # 1 MiB, not compressible by accident
    digest = hashlib.sha256()
    with (tmp_path / "big").open("wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
            digest.update(block)
    with (tmp_path / "big").open("rb") as handle:
        default_storage.save(f"{prefix}/model.safetensors", File(handle))
    model = CatalogModel.objects.create(
        owner=alice, name="big", kind=Kind.FULL, family="causal_lm", storage_prefix=prefix,
        files=[{"name": "model.safetensors", "size_bytes": size, "sha256": digest.hexdigest()}], size_bytes=size,
    )
    streamed = hashlib.sha256()
    total = biggest = 0
    tracemalloc.start()
    for chunk in downloads.stream_zip(model):
        streamed.update(chunk)
        total += len(chunk)
        biggest = max(biggest, len(chunk))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > size
    assert biggest <= 2 * downloads.CHUNK_BYTES
    assert peak < 8 * downloads.CHUNK_BYTES, f"peak {peak} bytes while streaming {size}"


def test_single_file_download_streams_the_stored_bytes(client_alice, alices_causal_adapter):
    entry = next(e for e in alices_causal_adapter.files if e["name"] == "adapter_model.safetensors")
    response = client_alice.get(f"/models/{alices_causal_adapter.id}/files/adapter_model.safetensors")
    assert response.status_code == 200 and response.streaming
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == entry["sha256"]
    assert response["X-Content-SHA256"] == entry["sha256"]


def test_a_file_name_not_in_the_catalog_is_404_never_a_path(client_alice, alices_causal_adapter):
    default_storage.save(f"{alices_causal_adapter.storage_prefix}/secret.txt", ContentFile(b"not listed"))
    for name in ["secret.txt", "../../db.sqlite3", "%2e%2e/%2e%2e/secret_key"]:
        assert client_alice.get(f"/models/{alices_causal_adapter.id}/files/{name}").status_code == 404


def test_browser_zip_download_matches_the_api_one(client_alice, alices_causal_adapter):
    response = client_alice.get(f"/models/{alices_causal_adapter.id}/download/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == sorted(e["name"] for e in alices_causal_adapter.files)
