"""A hostile model-import corpus, generated here: every file gets a 4xx with a message, never a 500, and
nothing is left behind (no catalog entry, no stored files, no half-converted folder)."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from webapp.catalog import archives
from webapp.catalog.models import CatalogModel

pytestmark = pytest.mark.django_db


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def safetensors(header: object, data: bytes = b"\0\0\0\0") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def folder_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def with_changes(base: dict[str, bytes], **changes: bytes | None) -> dict[str, bytes]:
    files = dict(base)
    for name, data in changes.items():
        name = name.replace("__", ".")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return files


def lying_crc(files: dict[str, bytes]) -> bytes:
    data = bytearray(zip_of(files))
    # Flip one byte of the first member's compressed data: its CRC no longer matches what inflates.
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 2] ^= 0xFF
    return bytes(data)


def gguf_header(version: int = 3, tensors: int = 0, kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kv)


def gguf_without_a_model(path: Path) -> bytes:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def zip_corpus(model: dict[str, bytes]) -> dict[str, bytes]:
    config = json.loads(model["config.json"])
    return {
        "safetensors header without a shape": zip_of(with_changes(model, model__safetensors=safetensors({"w": {"dtype": "F32", "data_offsets": [0, 4]}}))),
        "safetensors header that is a list": zip_of(with_changes(model, model__safetensors=safetensors([1, 2]))),
        "safetensors with a 1e12 shape": zip_of(with_changes(model, model__safetensors=safetensors({"w": {"dtype": "F32", "shape": [10**12], "data_offsets": [0, 4]}}))),
        "safetensors with a negative shape": zip_of(with_changes(model, model__safetensors=safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}))),
        "safetensors pointing past its end": zip_of(with_changes(model, model__safetensors=safetensors({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}))),
        "safetensors header longer than the file": zip_of(with_changes(model, model__safetensors=struct.pack("<Q", 10**9) + b"{}")),
        "safetensors header that is not JSON": zip_of(with_changes(model, model__safetensors=struct.pack("<Q", 4) + b"\xff\xfe{{")),
        "an empty safetensors file": zip_of(with_changes(model, model__safetensors=b"")),
        "config.json that is not JSON": zip_of(with_changes(model, config__json=b"{not json")),
        "config.json that is a list": zip_of(with_changes(model, config__json=b"[1, 2, 3]")),
        "config.json missing": zip_of(with_changes(model, config__json=None)),
        "a broken tokenizer_config.json": zip_of(with_changes(model, tokenizer_config__json=b"{\"chat_template\": ")),
        "custom code through auto_map": zip_of(with_changes(model, config__json=json.dumps({**config, "auto_map": {"AutoModel": "evil.EvilModel"}}).encode())),
        "an unknown model_type": zip_of(with_changes(model, config__json=json.dumps({**config, "model_type": "evilbert"}).encode())),
        "a zip whose CRC lies": lying_crc(model),
        "not a zip at all": b"PK\x03\x04 this is not really a zip",
    }


def gguf_corpus(scratch: Path) -> dict[str, bytes]:
    valid_header = gguf_header(tensors=1, kv=0)
    return {
        "GGUF magic only": b"GGUF",
        "GGUF magic then garbage": b"GGUF" + bytes(range(256)) * 4,
        "GGUF of an unknown version": gguf_header(version=99),
        "GGUF claiming 2^60 tensors": gguf_header(tensors=2**60),
        "GGUF claiming 2^60 metadata keys": gguf_header(kv=2**60),
        "GGUF with no tensors": gguf_header(),
        "GGUF whose tensor table is cut short": valid_header + struct.pack("<Q", 1000) + b"x" * 10,
        "GGUF that parses but is no model": gguf_without_a_model(scratch / "nomodel.gguf"),
        "not GGUF at all": b"\x89PNG\r\n\x1a\n not a model",
    }


def leftovers() -> set[str]:
    files = Path(settings.MEDIA_ROOT) / "models"
    stored = {str(p) for p in files.rglob("*")} if files.exists() else set()
    partial = {str(p) for p in (settings.LAYERCAKE_CACHE / "gguf").glob("*.partial")} if (settings.LAYERCAKE_CACHE / "gguf").exists() else set()
    return stored | partial


@pytest.fixture
def tiny_model_files(tiny_encoder_dir: Path) -> dict[str, bytes]:
    files = folder_files(tiny_encoder_dir)
    files.setdefault("tokenizer_config.json", b"{}")
    return files


def check_refused(post: Callable[[str, bytes], object], corpus: dict[str, bytes]) -> None:
    before = leftovers()
    failures = []
    for case, data in corpus.items():
        response = post(case, data)
        status = response.status_code  # type: ignore[attr-defined]
        if not 400 <= status < 500:
            failures.append(f"{case}: {status}")
    assert not failures, failures
    assert not CatalogModel.objects.exists()
    assert leftovers() == before


def test_every_hostile_zip_gets_a_4xx_on_the_page_and_leaves_nothing(client_alice, tiny_model_files):
    corpus = zip_corpus(tiny_model_files)

    def post(case: str, data: bytes):  # type: ignore[no-untyped-def]
        response = client_alice.post("/models/import/", {"kind": "base", "name": "x", "file": SimpleUploadedFile("m.zip", data)})
        assert response.status_code != 302, case
        assert "error" in response.content.decode().lower() or "refused" in response.content.decode().lower(), case
        return response

    check_refused(post, corpus)


def test_every_hostile_file_gets_a_4xx_with_a_message_through_the_api(api_alice, tiny_model_files, tmp_path):
    corpus = {**zip_corpus(tiny_model_files), **{f"{k} (.gguf)": v for k, v in gguf_corpus(tmp_path).items()}}

    def post(case: str, data: bytes):  # type: ignore[no-untyped-def]
        name = "m.gguf" if case.endswith("(.gguf)") else "m.zip"
        response = api_alice.post("/api/v1/models/import/", {"kind": "base", "name": "x", "file": SimpleUploadedFile(name, data)}, format="multipart")
        if 400 <= response.status_code < 500:
            assert response.json()["error"], case
        return response

    check_refused(post, corpus)


def test_custom_code_is_refused_with_the_reason(api_alice, tiny_model_files):
    config = json.loads(tiny_model_files["config.json"])
    data = zip_of(with_changes(tiny_model_files, config__json=json.dumps({**config, "auto_map": {"AutoModel": "m.M"}}).encode()))
    response = api_alice.post("/api/v1/models/import/", {"kind": "base", "file": SimpleUploadedFile("m.zip", data)}, format="multipart")
    assert response.status_code == 400
    assert "never runs code shipped with a model" in response.json()["error"]


def test_a_bomb_of_many_small_members_is_refused_before_unpacking(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(40):  # 40 x 1 MiB of zeros: each member under the per-member check, 40 MiB in all
            archive.writestr(f"shard-{index:03d}.safetensors", bytes(1 << 20))
    (tmp_path / "bomb.zip").write_bytes(buffer.getvalue())
    with pytest.raises(archives.LayercakeError, match="inflate .* times in all"):
        archives.extract_model_zip(tmp_path / "bomb.zip", tmp_path / "out", max_bytes=1 << 40)
    assert not (tmp_path / "out").exists()


def test_a_real_model_zip_still_imports(api_alice, tiny_encoder_dir, tmp_path):
    folder = shutil.copytree(tiny_encoder_dir, tmp_path / "enc")
    response = api_alice.post("/api/v1/models/import/", {"kind": "base", "name": "fine", "file": SimpleUploadedFile("m.zip", zip_of(folder_files(folder)))}, format="multipart")
    assert response.status_code == 201, response.content
