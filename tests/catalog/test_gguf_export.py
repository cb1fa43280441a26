"""GGUF export: the file gguf-py writes reads back in transformers and answers like its source, within the stated bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from webapp.catalog import gguf_export


@pytest.fixture(scope="module", params=["f16", "q8_0"])
def exported(request, tiny_causal_lm_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    out_dir = tmp_path_factory.mktemp(f"gguf-{request.param}")
    evidence = gguf_export.export_and_prove(tiny_causal_lm_dir, out_dir, request.param, "tiny llama")
    return request.param, out_dir, evidence


def test_exported_gguf_answers_like_the_source_within_its_bound(exported):
    output_type, _, evidence = exported
    assert evidence["passed"], evidence
    assert evidence["bound"] == gguf_export.LOGIT_BOUNDS[output_type]
    assert 0 < evidence["max_abs_logit_diff"] <= evidence["bound"]
    for row in evidence["prompts"]:
        assert row["outputs_match"] and row["tokenizer_ids_match"], row
        assert row["source_output"] == row["gguf_output"]


def test_file_carries_the_tokenizer_chat_template_and_quantised_weights(exported, tiny_causal_lm_dir):
    import gguf
    from transformers import AutoTokenizer

    output_type, out_dir, evidence = exported
    reader = gguf.GGUFReader(out_dir / evidence["file"]["name"])

    def text(key: str) -> str:
        return str(reader.fields[key].contents())

    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    assert text("general.architecture") == "llama"
    assert text("tokenizer.ggml.model") == "gpt2" and text("tokenizer.ggml.pre") == "gpt-2"
    assert reader.fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id
    assert reader.fields["tokenizer.ggml.padding_token_id"].contents() == tokenizer.pad_token_id
    template = text("tokenizer.chat_template")
    assert "<|im_start|>" in template and "{% generation %}" not in template  # transformers-only tags dropped
    kinds = {tensor.tensor_type.name for tensor in reader.tensors}
    assert kinds == {"F32", "F16" if output_type == "f16" else "Q8_0"}  # norms stay float32, as llama.cpp keeps them
    # special tokens are control tokens, so llama.cpp and transformers never split them
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert reader.fields["tokenizer.ggml.token_type"].contents()[im_end] == gguf.TokenType.CONTROL


def test_q8_0_is_smaller_than_f16(tiny_causal_lm_dir, tmp_path):
    sizes = {
        output_type: gguf_export.write_gguf(tiny_causal_lm_dir, tmp_path / f"{output_type}.gguf", output_type, "t").size_bytes
        for output_type in gguf_export.OUTPUT_TYPES
    }
    assert sizes["q8_0"] < 0.7 * sizes["f16"]


def test_modelfile_translates_chatml_and_stops_at_the_end_of_turn(exported):
    _, out_dir, evidence = exported
    text = (out_dir / "Modelfile").read_text()
    assert text.startswith(f"FROM ./{evidence['file']['name']}\n")
    assert 'TEMPLATE """' in text and "{{ range .Messages }}" in text.replace("{{- range", "{{ range")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert evidence["modelfile"]["template"] == "chatml" and evidence["modelfile"]["template_verified"] is True


@pytest.fixture(scope="module")
def sharp_attention_dir(tiny_causal_lm_dir, tmp_path_factory) -> Path:
    """The tiny Llama with q and k scaled up: random init attends almost uniformly, which would hide a q/k layout error."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("sharp")
    shutil.copytree(tiny_causal_lm_dir, folder, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                parameter.mul_(12.0)
    model.save_pretrained(folder)
    return folder


def test_rotary_layout_is_right_and_a_wrong_one_fails_the_proof(sharp_attention_dir, tmp_path, monkeypatch):
    assert gguf_export.export_and_prove(sharp_attention_dir, tmp_path / "right", "f16", "sharp")["passed"]
    # Without llama.cpp's q/k permutation, transformers un-permutes weights that were never permuted.
    monkeypatch.setattr(gguf_export, "permute_qk", lambda weights, heads: weights)
    evidence = gguf_export.export_and_prove(sharp_attention_dir, tmp_path / "wrong", "f16", "sharp")
    assert evidence["passed"] is False
    assert evidence["max_abs_logit_diff"] > gguf_export.LOGIT_BOUNDS["f16"]


def test_an_architecture_outside_the_tensor_maps_is_refused_naming_the_supported_ones():
    with pytest.raises(gguf_export.ExportRefused) as refused:
        gguf_export.check_exportable({"architectures": ["BertForSequenceClassification"]})
    message = str(refused.value)
    assert "BertForSequenceClassification" in message
    assert all(name in message for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"))


def test_a_sentencepiece_tokenizer_is_refused(tmp_path: Path):
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "Unigram"}, "decoder": {"type": "Metaspace"}}')
    with pytest.raises(gguf_export.ExportRefused, match="byte-level BPE"):
        gguf_export.check_tokenizer(tmp_path)


def test_an_untranslatable_chat_template_gets_no_template_and_says_so(tiny_causal_lm_dir, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_causal_lm_dir, folder)
    (folder / "chat_template.jinja").write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    modelfile = gguf_export.ollama_modelfile(folder, "x.gguf")
    assert modelfile.template is None and "TEMPLATE" not in modelfile.text.replace("No TEMPLATE", "")
    assert "not one we translate" in modelfile.note


def test_scaled_rotary_embeddings_are_refused_rather_than_written_wrong():
    with pytest.raises(gguf_export.ExportRefused, match="llama3 rope scaling"):
        gguf_export.check_exportable({"architectures": ["LlamaForCausalLM"], "rope_parameters": {"rope_type": "llama3", "factor": 8.0}})
