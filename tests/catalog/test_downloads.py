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


def unzip(response) -> zipfile.ZipFile:  # type: ignore[no-untyped-def]
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_adapter_zip_streams_the_save_pretrained_layout_and_checksums_match(api_alice, alices_causal_adapter):
    response = api_alice.get(f"/api/v1/models/{alices_causal_adapter.id}/download/")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/zip"
    assert 'filename="alice-chat-lora.zip"' in response["Content-Disposition"]
    archive = unzip(response)
    assert archive.testzip() is None
    names = set(archive.namelist())
    assert {f"alice-chat-lora/{name}" for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md")} <= names
    for entry in alices_causal_adapter.files:
        if entry["name"] != "README.md":  # the card gets a "Use" section for the download (test_model_card_usage)
            assert hashlib.sha256(archive.read(f"alice-chat-lora/{entry['name']}")).hexdigest() == entry["sha256"]
    assert archive.getinfo("alice-chat-lora/adapter_model.safetensors").compress_type == zipfile.ZIP_STORED


def test_zip_holds_one_top_level_folder_named_safely_after_the_model(api_alice, alices_causal_adapter):
    alices_causal_adapter.name = "../My model: v2/ünï"
    alices_causal_adapter.save()
    response = api_alice.get(f"/api/v1/models/{alices_causal_adapter.id}/download/")
    assert 'filename="My-model--v2--n.zip"' in response["Content-Disposition"]
    names = unzip(response).namelist()
    assert {name.split("/", 1)[0] for name in names} == {"My-model--v2--n"}
    assert all(name.count("/") == 1 and ".." not in name for name in names)


def test_zip_checksums_list_still_verifies_inside_the_unzipped_folder(api_alice, causal_base, causal_adapter_dir, alice, tmp_path):
    import shutil

    from jobs.training.checksums import write_checksums
    from webapp.catalog import registering

    artifact = shutil.copytree(causal_adapter_dir, tmp_path / "artifact")
    write_checksums(artifact)  # as the engine does
    model = registering.register_derived_model(artifact, name="checked", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    archive = unzip(api_alice.get(f"/api/v1/models/{model.id}/download/"))
    listing = archive.read("checked/checksums.sha256").decode().splitlines()
    assert any(line.endswith("  README.md") for line in listing)
    for line in listing:
        digest, _, name = line.partition("  ")
        assert hashlib.sha256(archive.read(f"checked/{name}")).hexdigest() == digest, name


def test_a_model_without_a_card_gets_one_in_the_zip(api_alice, alice, tiny_bert_dir):
    from webapp.catalog import importing

    (tiny_bert_dir / "README.md").unlink()
    base = importing.import_base_model(str(tiny_bert_dir), name="bert-no-card", owner=alice)
    archive = unzip(api_alice.get(f"/api/v1/models/{base.id}/download/"))
    assert "bert-no-card/README.md" in archive.namelist()
    assert "## Use" in archive.read("bert-no-card/README.md").decode()


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
    assert sorted(unzip(response).namelist()) == sorted(f"alice-chat-lora/{e['name']}" for e in alices_causal_adapter.files)
