"""Importing from the browser: base zips and adapter zips; hostile archives and mismatched adapters are refused."""

from __future__ import annotations

import io
import json
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.catalog.conftest import make_lora_adapter
from webapp.catalog import archives, importing
from webapp.catalog.models import CatalogModel, Kind
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db


def zip_folder(folder: Path, top: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, top + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def upload(data: bytes, name: str = "model.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/zip")


def test_base_model_zip_uploaded_in_the_browser_is_imported_for_its_owner(client_alice, tiny_encoder_dir, alice):
    response = client_alice.post("/models/import/", {"kind": "base", "name": "my-encoder", "file": upload(zip_folder(tiny_encoder_dir, "enc/"))})
    assert response.status_code == 302
    model = CatalogModel.objects.get(name="my-encoder")
    assert model.owner == alice and model.kind == Kind.BASE and model.architecture == "BertModel"
    assert "model.safetensors" in {f["name"] for f in model.files}


def test_external_adapter_on_its_base_is_imported_under_it(causal_base, causal_adapter_dir, alice, tmp_path):
    folder = shutil.copytree(causal_adapter_dir, tmp_path / "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "SomeOrg/tiny-llama"  # a hub id naming the same model
    (folder / "adapter_config.json").write_text(json.dumps(config))
    adapter = importing.import_upload(upload(zip_folder(folder)), kind="adapter", name="ext", owner=alice, base=causal_base)
    assert adapter.parent == causal_base and adapter.kind == Kind.ADAPTER and adapter.tasks == ["sft"]


def test_adapter_naming_another_base_is_refused_with_the_reason(causal_base, causal_adapter_dir, alice, tmp_path):
    folder = shutil.copytree(causal_adapter_dir, tmp_path / "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "meta-llama/Llama-3-8B"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(LayercakeError, match="trained on 'meta-llama/Llama-3-8B', not on tiny-llama"):
        importing.import_upload(upload(zip_folder(folder)), kind="adapter", name="x", owner=alice, base=causal_base)
    assert not CatalogModel.objects.filter(kind=Kind.ADAPTER).exists()


def test_adapter_whose_shapes_do_not_fit_the_base_is_refused(encoder_base, causal_adapter_dir, tiny_causal_lm_dir, alice, tmp_path, tiny_encoder_dir):
    # A LoRA made for the encoder, but offered for the causal LM: modules it targets do not exist there.
    folder = make_lora_adapter(tiny_encoder_dir, tmp_path / "enc-adapter", task="classification")
    llama = importing.import_base_model(str(tiny_causal_lm_dir), name="tiny-encoder-impostor")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = llama.name
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(LayercakeError, match="do not fit tiny-encoder-impostor") as raised:
        importing.import_upload(upload(zip_folder(folder)), kind="adapter", name="x", owner=alice, base=llama)
    assert "does not have" in raised.value.details[0].message


def hostile_zip(name: str, data: bytes = b"{}", symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, data)
        archive.writestr("config.json", b"{}")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "symlink", "reason"), [
    ("../../evil.json", False, "outside the folder"),
    ("/etc/evil.json", False, "absolute path"),
    ("C:/evil.json", False, "absolute path"),
    ("link.json", True, "symbolic link"),
    ("pytorch_model.bin", False, "pickle"),
])
def test_hostile_zips_are_refused(tmp_path, name, symlink, reason):
    (tmp_path / "in.zip").write_bytes(hostile_zip(name, symlink=symlink))
    with pytest.raises(LayercakeError, match=reason):
        archives.extract_model_zip(tmp_path / "in.zip", tmp_path / "out", max_bytes=1 << 30)
    assert not (tmp_path / "evil.json").exists()


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.safetensors", b"\0" * (50 * 1024 * 1024))
    (tmp_path / "bomb.zip").write_bytes(buffer.getvalue())
    with pytest.raises(LayercakeError, match="zip bomb"):
        archives.extract_model_zip(tmp_path / "bomb.zip", tmp_path / "out", max_bytes=1 << 30)
    assert not (tmp_path / "out").exists()


def test_a_zip_larger_than_the_limit_is_refused(tmp_path, tiny_encoder_dir):
    (tmp_path / "m.zip").write_bytes(zip_folder(tiny_encoder_dir))
    with pytest.raises(LayercakeError, match="more than the"):
        archives.extract_model_zip(tmp_path / "m.zip", tmp_path / "out", max_bytes=1000)


def test_import_page_shows_the_refusal(client_alice, causal_base, causal_adapter_dir, tmp_path):
    folder = shutil.copytree(causal_adapter_dir, tmp_path / "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "other/model"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    response = client_alice.post("/models/import/", {"kind": "adapter", "base": str(causal_base.id), "file": upload(zip_folder(folder))})
    assert response.status_code == 400
    assert "trained on &#x27;other/model&#x27;" in response.content.decode()


def test_api_import_of_an_adapter_answers_201_and_a_mismatch_400(api_alice, causal_base, causal_adapter_dir, tmp_path):
    response = api_alice.post("/api/v1/models/import/", {"kind": "adapter", "base": str(causal_base.id), "name": "ext",
                                                         "file": upload(zip_folder(causal_adapter_dir))}, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["parent"] == str(causal_base.id) and response.json()["kind"] == "adapter"
    bad = api_alice.post("/api/v1/models/import/", {"kind": "adapter", "base": str(causal_base.id),
                                                    "file": upload(b"not a zip")}, format="multipart")
    assert bad.status_code == 400 and bad.json()["error"] == "The file is not a zip archive."
    missing_base = api_alice.post("/api/v1/models/import/", {"kind": "adapter", "file": upload(b"x")}, format="multipart")
    assert missing_base.status_code == 400 and missing_base.json()["details"][0]["field"] == "base"


def test_a_file_named_gguf_that_is_not_one_is_refused(alice):
    with pytest.raises(LayercakeError, match="not a GGUF model"):
        importing.import_upload(upload(b"PK\x03\x04 not gguf", "model.gguf"), kind="base", name="x", owner=alice)
    assert not CatalogModel.objects.exists()


@pytest.mark.slow
def test_a_gguf_upload_becomes_a_private_base_model(alice):
    from django.core.files.uploadedfile import TemporaryUploadedFile

    gguf = next(b for b in importing.BUNDLED_MODELS if b.name == "SmolLM2-135M-Instruct").path()
    with gguf.open("rb") as source:
        uploaded = TemporaryUploadedFile("SmolLM2.gguf", "application/octet-stream", gguf.stat().st_size, None)
        shutil.copyfileobj(source, uploaded)
        uploaded.seek(0)
        model = importing.import_upload(uploaded, kind="base", name="my-smol", owner=alice)
    assert model.owner == alice and model.architecture == "LlamaForCausalLM"
    assert round(model.parameter_count / 1e6, 1) == 134.5 and model.has_chat_template
