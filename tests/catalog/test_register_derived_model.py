"""register_derived_model: artifacts stored with checksums, adapters count their own parameters, lineage kept."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from django.core.files.storage import default_storage

from webapp.catalog import registering
from webapp.catalog.models import CatalogModel, Kind
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db


def test_adapter_is_stored_with_every_file_and_its_own_parameter_count(alices_causal_adapter, causal_adapter_dir, causal_base):
    from safetensors import safe_open

    adapter = alices_causal_adapter
    names = {entry["name"] for entry in adapter.files}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md", "metrics.json"} <= names
    with safe_open(str(causal_adapter_dir / "adapter_model.safetensors"), "pt") as handle:
        own = sum(handle.get_slice(key).get_shape()[0] * handle.get_slice(key).get_shape()[1] for key in handle.keys())
    assert adapter.parameter_count == own
    assert 0 < adapter.parameter_count < causal_base.parameter_count / 10
    assert adapter.kind == Kind.ADAPTER and adapter.parent == causal_base and adapter.family == "causal_lm"
    assert adapter.size_bytes == sum(entry["size_bytes"] for entry in adapter.files)
    for entry in adapter.files:
        with default_storage.open(f"{adapter.storage_prefix}/{entry['name']}", "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == entry["sha256"]


def test_lineage_runs_from_the_base_to_the_adapter(alices_causal_adapter, causal_base):
    assert [m.id for m in alices_causal_adapter.lineage()] == [causal_base.id, alices_causal_adapter.id]
    assert alices_causal_adapter.storage_prefix == f"models/{alices_causal_adapter.id}"


def test_a_full_model_counts_all_its_parameters(causal_base, tiny_causal_lm_dir, alice):
    full = registering.register_derived_model(
        tiny_causal_lm_dir, name="full-ft", kind="full", parent=causal_base, owner=alice, metrics={}, task="sft",
    )
    assert full.parameter_count == causal_base.parameter_count
    assert full.architecture == "LlamaForCausalLM"


def test_engine_checksums_travel_and_a_tampered_artifact_is_refused(causal_base, causal_adapter_dir, tmp_path, alice):
    from jobs.training.checksums import write_checksums

    folder = shutil.copytree(causal_adapter_dir, tmp_path / "artifact")
    write_checksums(folder)
    model = registering.register_derived_model(folder, name="ok", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    assert "checksums.sha256" in {entry["name"] for entry in model.files}
    (folder / "README.md").write_text("tampered")
    with pytest.raises(LayercakeError, match="checksums") as raised:
        registering.register_derived_model(folder, name="bad", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    assert raised.value.details[0].field == "README.md"
    assert CatalogModel.objects.filter(name="bad").count() == 0


def test_a_folder_without_adapter_weights_is_refused_and_nothing_is_stored(causal_base, causal_adapter_dir, tmp_path, alice):
    folder = shutil.copytree(causal_adapter_dir, tmp_path / "artifact")
    (folder / "adapter_model.safetensors").unlink()
    before = set(default_storage.listdir("models")[0])
    with pytest.raises(LayercakeError, match="not an adapter"):
        registering.register_derived_model(folder, name="x", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    assert set(default_storage.listdir("models")[0]) == before


def test_a_storage_failure_midway_leaves_no_files_and_no_row(causal_base, causal_adapter_dir, alice, monkeypatch):
    saved: list[str] = []
    real_save = default_storage.save

    def failing_save(name, content, *args, **kwargs):  # type: ignore[no-untyped-def]
        if len(saved) == 2:
            raise OSError("disk full")
        saved.append(real_save(name, content, *args, **kwargs))
        return saved[-1]

    monkeypatch.setattr(default_storage, "save", failing_save)
    with pytest.raises(OSError):
        registering.register_derived_model(causal_adapter_dir, name="x", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    assert len(saved) == 2 and not any(default_storage.exists(name) for name in saved)
    assert not CatalogModel.objects.filter(name="x").exists()
