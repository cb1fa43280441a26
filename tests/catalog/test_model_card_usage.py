"""The model card's "Use" section loads the downloaded, unzipped folders for real: no hub id, no placeholder path."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from webapp.catalog import loading, registering, storing

pytestmark = pytest.mark.django_db


def download_and_unzip(api: Any, model_id: Any, into: Path) -> None:
    response = api.get(f"/api/v1/models/{model_id}/download/")
    assert response.status_code == 200
    zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).extractall(into)


def run_the_card(api: Any, card: str, into: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Fetch every zip the card's curl lines name (through the API client), unzip, then exec its Python."""
    urls = re.findall(r"^curl .* (\S+/api/v1/models/[0-9a-f-]+/download/)$", card, re.M)
    assert urls, card
    for url in urls:
        assert url.startswith("http://testserver/api/v1/models/")
        download_and_unzip(api, url.split("/")[-3], into)
    python = re.search(r"```python\n(.*?)```", card, re.S)
    assert python is not None, card
    monkeypatch.chdir(into)
    namespace: dict[str, Any] = {}
    exec(compile(python.group(1), "README.md", "exec"), namespace)  # the snippet under test, as a reader runs it
    return namespace


def card_in_zip(api: Any, model: Any, into: Path) -> str:
    download_and_unzip(api, model.id, into)
    folder = next(into.iterdir())
    return (folder / "README.md").read_text()


def test_classifier_adapter_card_loads_the_adapter_over_its_downloaded_base(api_alice, alices_classifier_adapter, encoder_base, tmp_path, monkeypatch):
    import torch
    from peft import PeftModel

    card = card_in_zip(api_alice, alices_classifier_adapter, tmp_path / "probe")
    assert "PeftModel.from_pretrained(base, 'alice-sentiment-lora')" in card
    assert f"from_pretrained('{encoder_base.name}', config=AutoConfig.from_pretrained('alice-sentiment-lora'))" in card
    namespace = run_the_card(api_alice, card, tmp_path / "work", monkeypatch)
    assert isinstance(namespace["model"], PeftModel)
    expected = loading.load_adapter_on_base(storing.local_dir(alices_classifier_adapter), storing.local_dir(encoder_base))
    inputs = namespace["tokenizer"]("I really enjoyed it", return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(namespace["model"](**inputs).logits, expected(**inputs).logits, atol=1e-6)


def test_engine_card_placeholder_and_hub_id_are_replaced(api_alice, causal_base, causal_adapter_dir, alice, tmp_path, monkeypatch):
    from jobs.training.artifact import model_card

    artifact = Path(shutil.copytree(causal_adapter_dir, tmp_path / "artifact"))
    (artifact / "README.md").write_text(model_card(
        base_model="layercake/tiny-base", adapter=True, task="sft", method="lora", dataset_names=["chat"],
        metrics={"base": {}, "tuned": {}}, hyperparameters={}, summary={"global_step": 3},
    ))
    adapter = registering.register_derived_model(artifact, name="chat lora", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    card = card_in_zip(api_alice, adapter, tmp_path / "probe")
    assert "path/to/this/folder" not in card and "from_pretrained('layercake/tiny-base')" not in card
    assert card.count("## Use") == 1 and "## Training" in card and "- global_step: 3" in card
    namespace = run_the_card(api_alice, card, tmp_path / "work", monkeypatch)
    assert namespace["model"].active_adapter == "default"


def test_full_model_card_loads_the_folder_with_its_auto_class(api_alice, client_alice, causal_base, tiny_causal_lm_dir, alice, tmp_path, monkeypatch):
    full = registering.register_derived_model(tiny_causal_lm_dir, name="full-ft", kind="full", parent=causal_base, owner=alice, metrics={}, task="sft")
    card = card_in_zip(api_alice, full, tmp_path / "probe")
    assert "AutoModelForCausalLM.from_pretrained('full-ft')" in card and "PeftModel" not in card
    namespace = run_the_card(api_alice, card, tmp_path / "work", monkeypatch)
    assert type(namespace["model"]).__name__ == "LlamaForCausalLM"
    page = client_alice.get(f"/models/{full.id}/").content.decode()
    assert "AutoModelForCausalLM.from_pretrained(&#x27;full-ft&#x27;)" in page and "/api/v1/models/" in page
