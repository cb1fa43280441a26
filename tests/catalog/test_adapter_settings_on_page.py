"""An adapter's page lists its settings from adapter_config.json, each module once (peft can name a head twice)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from webapp.catalog import presenting, registering

pytestmark = pytest.mark.django_db


def test_modules_to_save_are_listed_once(client_alice, encoder_base, classifier_adapter_dir, alice, tmp_path):
    artifact = Path(shutil.copytree(classifier_adapter_dir, tmp_path / "artifact"))
    config = json.loads((artifact / "adapter_config.json").read_text())
    # What the engine writes for a classifier: its own head name, then peft's classifier names appended.
    config["modules_to_save"] = ["classifier", "classifier", "score"]
    (artifact / "adapter_config.json").write_text(json.dumps(config))
    adapter = registering.register_derived_model(
        artifact, name="sentiment", kind="adapter", parent=encoder_base, owner=alice, metrics={}, task="classification",
    )
    page = client_alice.get(f"/models/{adapter.id}/").content.decode()
    saved = re.search(r'<dd class="modules-to-save"[^>]*>(.*?)</dd>', page, re.S)
    assert saved is not None
    assert re.findall(r"<code>(\w+)</code>", saved.group(1)) == ["classifier", "score"]
    assert "LORA, rank 4, alpha 8" in page
    assert set(presenting.adapter_summary(adapter)["target_modules"]) == set(config["target_modules"])
