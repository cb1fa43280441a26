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
