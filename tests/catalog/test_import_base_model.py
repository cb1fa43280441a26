"""Importing base models from local folders: facts recorded, files stored with checksums, idempotent."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from jobs.training import registry
from webapp.catalog import importing
from webapp.catalog.models import CatalogModel, Kind
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db


def test_import_records_architecture_parameters_and_tasks(tiny_bert_dir, tiny_bert_parameter_count):
    model = importing.import_base_model(str(tiny_bert_dir), name="tiny-bert")
    assert model.kind == Kind.BASE
    assert model.architecture == "BertModel"
    assert model.family == "encoder"
    assert model.parameter_count == tiny_bert_parameter_count
    # Every task of its family, computed from the registry (a new task needs no data migration).
    assert model.tasks == registry.tasks_for_architecture("encoder") and "classification" in model.tasks
    assert model.licence == "mit"
    assert model.dtype == "float32"
    assert model.owner is None


def test_imported_files_are_in_storage_with_matching_checksums(tiny_bert_dir):
    model = importing.import_base_model(str(tiny_bert_dir))
    names = {entry["name"] for entry in model.files}
    assert {"config.json", "model.safetensors", "README.md"} <= names
    for entry in model.files:
        with default_storage.open(f"{model.storage_prefix}/{entry['name']}", "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == entry["sha256"]
    assert model.size_bytes == sum(entry["size_bytes"] for entry in model.files)


def test_second_import_of_the_same_source_is_a_no_op(tiny_bert_dir):
    first = importing.import_base_model(str(tiny_bert_dir))
    second = importing.import_base_model(str(tiny_bert_dir))
    assert first.id == second.id
    assert CatalogModel.objects.count() == 1


def test_pickle_weights_are_never_stored(tiny_bert_dir):
    (tiny_bert_dir / "pytorch_model.bin").write_bytes(b"not loaded, ever")
    model = importing.import_base_model(str(tiny_bert_dir))
    assert "pytorch_model.bin" not in {entry["name"] for entry in model.files}


def test_folder_without_safetensors_is_refused_and_nothing_is_stored(tmp_path, tiny_bert_dir):
    (tiny_bert_dir / "model.safetensors").unlink()
    with pytest.raises(LayercakeError, match="safetensors"):
        importing.import_base_model(str(tiny_bert_dir))
    assert CatalogModel.objects.count() == 0


def test_local_dir_loads_with_transformers(tiny_bert_dir):
    from transformers import AutoModel

    model = importing.import_base_model(str(tiny_bert_dir))
    loaded = AutoModel.from_pretrained(model.local_dir())
    assert sum(p.numel() for p in loaded.parameters()) == model.parameter_count


def test_command_prints_parameters_and_tasks(tiny_bert_dir):
    out = StringIO()
    call_command("import_base_model", str(tiny_bert_dir), "--name", "tiny", stdout=out)
    assert "tiny: BertModel" in out.getvalue()
    assert ", ".join(registry.tasks_for_architecture("encoder")) in out.getvalue()


def test_command_with_an_unknown_source_is_an_actionable_error(tmp_path):
    with pytest.raises(CommandError, match="neither a model folder"):
        call_command("import_base_model", str(tmp_path / "missing"))


def test_command_refuses_a_non_gguf_file(tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\x80\x04pickle")
    with pytest.raises(CommandError, match=r"folder or a \.gguf file"):
        call_command("import_base_model", str(weights))


def test_hub_import_is_refused_when_offline():
    with pytest.raises(CommandError, match="offline"):
        call_command("import_base_model", "HuggingFaceTB/SmolLM2-135M-Instruct")
