from __future__ import annotations

from pathlib import Path

import pytest


def build_tiny_bert(path: Path) -> Path:
    """A BERT encoder with a few thousand parameters: enough for import, counting and listing."""
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    model = BertModel(config)
    model.save_pretrained(path, safe_serialization=True)
    (path / "README.md").write_text("---\nlicense: mit\n---\n# tiny\n")
    return path


@pytest.fixture
def tiny_bert_dir(tmp_path) -> Path:
    return build_tiny_bert(tmp_path / "tiny-bert")


@pytest.fixture
def tiny_bert_parameter_count(tiny_bert_dir) -> int:
    from transformers import BertModel

    return sum(p.numel() for p in BertModel.from_pretrained(tiny_bert_dir).parameters())


# --- adapters made with plain peft on the tiny models (no dependency on the training engine) ---------


def make_lora_adapter(
    base_dir: Path, out_dir: Path, *, task: str = "sft", seed: int = 1, labels: list[str] | None = None, lora_b_scale: float = 1.0
) -> Path:
    """A LoRA adapter with random, non-zero weights (init_lora_weights=False), saved like the engine saves one."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    torch.manual_seed(seed)
    if task == "sft":
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    else:
        labels = labels or ["negative", "positive"]
        auto = AutoModelForSequenceClassification if task == "classification" else AutoModelForTokenClassification
        model = auto.from_pretrained(base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
        task_type = TaskType.SEQ_CLS if task == "classification" else TaskType.TOKEN_CLS
        config = LoraConfig(task_type=task_type, r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a trained head, not the random one the base would get
        for name, parameter in peft_model.named_parameters():
            if "modules_to_save" in name:
                parameter.add_(torch.randn_like(parameter))
            if "lora_B" in name:
                parameter.mul_(lora_b_scale)
    peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    if task != "sft":
        peft_model.get_base_model().config.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    (out_dir / "README.md").write_text(f"---\nbase_model: {base_dir.name}\nlibrary_name: peft\n---\n# test adapter\n")
    (out_dir / "metrics.json").write_text('{"base": {}, "tuned": {}}')
    return out_dir


def make_prompt_tuning_adapter(base_dir: Path, out_dir: Path, virtual_tokens: int = 4) -> Path:
    """A soft prompt (peft prompt tuning) initialised from text, saved like the engine saves one."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text="Answer kindly",
        num_virtual_tokens=virtual_tokens, tokenizer_name_or_path=str(base_dir),
    )
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return out_dir


@pytest.fixture
def causal_base(tiny_causal_lm_dir):  # type: ignore[no-untyped-def]
    from webapp.catalog import importing

    return importing.import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")


@pytest.fixture
def encoder_base(tiny_encoder_dir):  # type: ignore[no-untyped-def]
    from webapp.catalog import importing

    return importing.import_base_model(str(tiny_encoder_dir), name="tiny-encoder")


@pytest.fixture(scope="session")
def causal_adapter_dir(tiny_causal_lm_dir, tmp_path_factory) -> Path:
    return make_lora_adapter(tiny_causal_lm_dir, tmp_path_factory.mktemp("causal-adapter"), task="sft", seed=1)


@pytest.fixture(scope="session")
def classifier_adapter_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return make_lora_adapter(tiny_encoder_dir, tmp_path_factory.mktemp("classifier-adapter"), task="classification", seed=2)


@pytest.fixture
def alices_causal_adapter(causal_base, causal_adapter_dir, alice):  # type: ignore[no-untyped-def]
    from webapp.catalog import registering

    return registering.register_derived_model(
        causal_adapter_dir, name="alice-chat-lora", kind="adapter", parent=causal_base, owner=alice,
        metrics={"base": {"eval_loss": 6.5}, "tuned": {"eval_loss": 5.1}}, task="sft",
    )


@pytest.fixture
def alices_classifier_adapter(encoder_base, classifier_adapter_dir, alice):  # type: ignore[no-untyped-def]
    from webapp.catalog import registering

    return registering.register_derived_model(
        classifier_adapter_dir, name="alice-sentiment-lora", kind="adapter", parent=encoder_base, owner=alice,
        metrics={"base": {"accuracy": 0.5}, "tuned": {"accuracy": 0.9}}, task="classification",
    )

