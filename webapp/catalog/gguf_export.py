"""Exporting a causal LM folder to GGUF (llama.cpp / Ollama) and proving the file answers like its source (plain Python, no Django).

The file format, tensor names and quantisation come from the `gguf` library (llama.cpp's gguf-py); the choices made
here follow llama.cpp's convert_hf_to_gguf.py: its vocabulary listing (`get_vocab_base`), its Llama q/k permutation,
and its rule of keeping 1-D tensors and norms in float32. The proof reads the file back with transformers
(`gguf_file=`, which de-quantises) and compares it with the source on the merge proof's fixed prompts.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobs.training.tasks.base import chat_inputs
from webapp.catalog import loading, merging

# The architectures whose tensors the gguf library's name maps cover and that transformers reads back.
# Mistral is written as llama.cpp writes it: architecture "llama" (same tensors, same rotary layout).
SUPPORTED_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {"arch": "llama", "permute_qk": True},
    "MistralForCausalLM": {"arch": "llama", "permute_qk": True},
    "Qwen2ForCausalLM": {"arch": "qwen2", "permute_qk": False},
}
# Output types gguf-py can write. K-quants (q4_K_M) cannot be produced here: gguf.quants implements
# dequantisation only for Q2_K..Q6_K (no quantize_blocks); llama.cpp's C `llama-quantize` makes them.
OUTPUT_TYPES = ("f16", "q8_0")
# Bytes per weight written, to size an export before it runs: q8_0 stores a block of 32 weights as 32 int8 and one
# f16 scale. (The 1-D tensors and norms kept in float32 are too few to count.)
BYTES_PER_WEIGHT = {"f16": 2.0, "q8_0": 34 / 32}
# Stated bounds on max |logit difference| against the float32 source, on the fixed prompts. f16 rounds each weight
# to 11 significant bits; q8_0 stores blocks of 32 weights as int8 with one f16 scale, about 20x the f16 error.
# Measured (docs/benchmarks.md): SmolLM2-135M 0.041 (f16) and 1.32 (q8_0), the tiny test Llama 3e-4 and 7e-3.
LOGIT_BOUNDS = {"f16": 0.1, "q8_0": 2.0}
# Chat templates we can translate to an Ollama Go template, recognised by their markers.
TRANSLATABLE_TEMPLATES = ("ChatML (<|im_start|> ... <|im_end|>)", "Llama 3 (<|start_header_id|> ... <|eot_id|>)")
# transformers-only Jinja tags: they render nothing, and llama.cpp's template engine does not know them.
TRANSFORMERS_ONLY_TAGS = re.compile(r"\{%-?\s*(generation|endgeneration)\s*-?%\}")


class ExportRefused(ValueError):
    """The model cannot be exported to GGUF here; the message says why and what can be."""


def supported_list() -> str:
    return ", ".join(sorted(SUPPORTED_ARCHITECTURES))


def check_exportable(config: dict[str, Any]) -> dict[str, Any]:
    """The export recipe for a config.json, or ExportRefused naming the supported architectures."""
    architectures = config.get("architectures") or []
    name = next((a for a in architectures if a in SUPPORTED_ARCHITECTURES), None)
    if name is None:
        shown = ", ".join(architectures) or config.get("model_type") or "unknown"
        raise ExportRefused(
            f"GGUF export covers {supported_list()} (the gguf library's tensor maps that transformers reads back); "
            f"this model is {shown}."
        )
    # transformers 5 saves rope_parameters; older config.json files say rope_scaling.
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = (rope.get("rope_type") or rope.get("type")) if isinstance(rope, dict) else None
    if rope_type not in (None, "default"):
        raise ExportRefused(f"GGUF export writes plain rotary embeddings; this model uses {rope_type} rope scaling.")
    return {"architecture": name, **SUPPORTED_ARCHITECTURES[name]}


def check_tokenizer(folder: Path) -> dict[str, Any]:
    """Only byte-level BPE tokenizers (tokenizer.ggml.model "gpt2": SmolLM2, Llama 3, Qwen2) are written."""
    path = folder / "tokenizer.json"
    if not path.exists():
        raise ExportRefused("GGUF export needs the model's tokenizer.json (a fast, byte-level BPE tokenizer).")
    tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
    model = tokenizer_json.get("model") or {}
    decoder = tokenizer_json.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise ExportRefused(
            "GGUF export writes byte-level BPE tokenizers (as SmolLM2, Llama 3 and Qwen2 use); "
            "this model's tokenizer is a different kind (sentencepiece or byte-fallback BPE)."
        )
    return tokenizer_json


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's `tokenizer.ggml.pre` for this tokenizer, read from its pre-tokenizer's structure.

    llama.cpp names pre-tokenizers by hashing one tokenizer's output on a test text; the structures below are
    the ones those names stand for. An unknown structure gets "default" (llama.cpp warns and uses its default split).
    """
    pre: dict[str, Any] = tokenizer_json.get("pre_tokenizer") or {}
    steps: list[dict[str, Any]] = (pre.get("pretokenizers") or []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds[:1] == ["Split"]:
        pattern = str((steps[0].get("pattern") or {}).get("Regex", ""))
        if pattern.startswith("(?i:'s|'t|'re|'ve|'m|'ll|'d)") and "\\p{N}{1,3}" in pattern:
            return "llama-bpe"
        if pattern.startswith("(?i:'s|'t|'re|'ve|'m|'ll|'d)") and "\\p{N}|" in pattern:
            return "qwen2"
    return "default"


def gguf_chat_template(template: str | None) -> str | None:
    """The chat template as llama.cpp runs it: transformers-only {% generation %} markers removed (they render nothing)."""
    return TRANSFORMERS_ONLY_TAGS.sub("", template) if template else None


def vocabulary(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and their types in id order, padded to the model's vocabulary size (convert_hf_to_gguf's get_vocab_base)."""
    import gguf

    reverse = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens: list[str] = []
    types: list[int] = []
    for index in range(vocab_size):
        token = reverse.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        if token in added:
            special = decoder[index].special or (token.startswith("<|") and token.endswith("|>"))
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types


def permute_qk(weights: Any, heads: int) -> Any:
    """HF's rotary layout to llama.cpp's (convert_hf_to_gguf LlamaModel.permute); transformers undoes it on load."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def source_tensors(folder: Path) -> Any:
    """(name, float32 numpy array) for every tensor in the folder's safetensors files, one at a time."""
    import torch
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="pt", device="cpu") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name).to(torch.float32).numpy()


@dataclass
class GgufFile:
    """What was written: the file's name, size, types and the template facts the Modelfile needs."""

    name: str
    output_type: str
    size_bytes: int
    architecture: str
    gguf_architecture: str
    tensor_types: dict[str, int]
    pre_tokenizer: str
    chat_template: bool
    seconds: float
    notes: list[str] = field(default_factory=list)


def write_gguf(model_dir: Path, out_file: Path, output_type: str, name: str) -> GgufFile:
    """Write `model_dir` (a safetensors causal LM with its tokenizer) to `out_file` as GGUF of `output_type`."""
    import gguf
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    if output_type not in OUTPUT_TYPES:
        raise ExportRefused(f"GGUF output types are {', '.join(OUTPUT_TYPES)}; not {output_type!r}.")
    started = time.perf_counter()
    config_json = json.loads((model_dir / "config.json").read_text())
    recipe = check_exportable(config_json)
    tokenizer_json = check_tokenizer(model_dir)
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)  # no remote code: only transformers' own architectures pass above
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    arch = next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == recipe["arch"])
    layers = int(config.num_hidden_layers)
    heads, kv_heads = int(config.num_attention_heads), int(config.num_key_value_heads or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    rope: dict[str, Any] = getattr(config, "rope_parameters", None) or {}
    rope_theta = float(rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0)
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[output_type]
    wanted = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[output_type]

    writer = gguf.GGUFWriter(out_file, recipe["arch"])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_block_count(layers)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = vocabulary(tokenizer, int(config.vocab_size))
    pre = pre_tokenizer_name(tokenizer_json)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=int(config.vocab_size))
    probe_ids = tokenizer("a").input_ids
    special.add_special_token["bos"] = tokenizer.bos_token_id is not None and probe_ids[:1] == [tokenizer.bos_token_id]
    special.add_special_token["eos"] = tokenizer.eos_token_id is not None and probe_ids[-1:] == [tokenizer.eos_token_id]
    template = gguf_chat_template(tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None)
    special.chat_template = template
    special.add_to_gguf(writer, quiet=True)

    name_map = gguf.get_tensor_name_map(arch, layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    tensor_types: dict[str, int] = {}
    notes: list[str] = []
    for hf_name, data in source_tensors(model_dir):
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportRefused(f"The gguf tensor map for {recipe['arch']} has no name for tensor {hf_name}.")
        if recipe["permute_qk"] and hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, heads)
        elif recipe["permute_qk"] and hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, kv_heads)
        # llama.cpp keeps 1-D tensors (norms, biases) in float32.
        qtype = gguf.GGMLQuantizationType.F32 if data.ndim <= 1 or gguf_name.endswith("_norm.weight") else wanted
        try:
            stored = gguf.quants.quantize(np.ascontiguousarray(data), qtype)
        except gguf.QuantError:
            # A row length that is not a multiple of the 32-value block: f16, as llama.cpp falls back.
            notes.append(f"{gguf_name}: row of {data.shape[-1]} values is not a multiple of 32, kept in f16")
            qtype = gguf.GGMLQuantizationType.F16
            stored = gguf.quants.quantize(data, qtype)
        writer.add_tensor(gguf_name, stored, raw_dtype=qtype)
        tensor_types[qtype.name] = tensor_types.get(qtype.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return GgufFile(
        name=out_file.name, output_type=output_type, size_bytes=out_file.stat().st_size,
        architecture=recipe["architecture"], gguf_architecture=recipe["arch"], tensor_types=tensor_types,
        pre_tokenizer=pre, chat_template=template is not None, seconds=round(time.perf_counter() - started, 3),
        notes=notes,
    )


# --- the Ollama Modelfile ---------------------------------------------------------------------------

OLLAMA_TEMPLATES = {
    "chatml": (
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    ),
    "llama3": (
        "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
}
LLAMA3_BOS = "<|begin_of_text|>"
OLLAMA_STOPS = {"chatml": ["<|im_end|>", "<|im_start|>"], "llama3": ["<|eot_id|>", "<|start_header_id|>"]}


def template_family(template: str | None) -> str | None:
    if not template:
        return None
    if "<|im_start|>" in template and "<|im_end|>" in template:
        return "chatml"
    if "<|start_header_id|>" in template and "<|eot_id|>" in template:
        return "llama3"
    return None


def render_like_ollama(family: str, system: str | None, messages: list[dict[str, str]]) -> str:
    """What the Go template above renders for these messages (checked against the model's own template)."""
    if family == "chatml":
        head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return head + body + "<|im_start|>assistant\n"
    head = f"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>" if system else ""
    body = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>" for m in messages)
    return head + body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def default_system_prompt(tokenizer: Any, family: str) -> str | None:
    """A system message the model's template adds when none is given (SmolLM2 does), to become the Modelfile's SYSTEM."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    pattern = (r"<\|im_start\|>system\n(.*?)<\|im_end\|>" if family == "chatml"
               else r"<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>")
    found = re.search(pattern, rendered, flags=re.DOTALL)
    return found.group(1) if found else None


@dataclass
class Modelfile:
    text: str
    template: str | None  # "chatml", "llama3" or None (not translated)
    template_verified: bool
    stop: list[str]
    note: str


def ollama_modelfile(model_dir: Path, gguf_name: str) -> Modelfile:
    """An Ollama Modelfile next to the GGUF: FROM it, the chat template translated when we can, stop tokens.

    The translation is checked: the Go template's output (mirrored in render_like_ollama) must equal the model's
    own Jinja template's on a conversation with and without a system message.
    """
    tokenizer = loading.load_tokenizer(model_dir)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    family = template_family(template)
    lines = [f"FROM ./{gguf_name}", ""]
    if family is None:
        note = (f"No TEMPLATE: this model's chat template is not one we translate ({'; '.join(TRANSLATABLE_TEMPLATES)} are). "
                "The Jinja template is in the GGUF's tokenizer.chat_template for llama.cpp.") if template else (
                "No TEMPLATE: the model has no chat template; Ollama will send prompts as raw text.")
        stops = [tokenizer.eos_token] if tokenizer.eos_token else []
        lines += [f"# {note}"]
        lines += [f'PARAMETER stop "{stop}"' for stop in stops]
        return Modelfile("\n".join(lines) + "\n", None, False, stops, note)
    system = default_system_prompt(tokenizer, family)
    conversation = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Bye"}]
    # Llama 3 templates write <|begin_of_text|> themselves; under Ollama llama.cpp adds it (tokenizer.ggml.add_bos_token).
    verified = all(
        tokenizer.apply_chat_template(([{"role": "system", "content": given}] if given else []) + conversation,
                                      tokenize=False, add_generation_prompt=True).removeprefix(LLAMA3_BOS if family == "llama3" else "")
        == render_like_ollama(family, given or system, conversation)
        for given in (None, "Be brief.")
    )
    stops = [stop for stop in OLLAMA_STOPS[family] if stop in tokenizer.get_vocab()]
    note = (f"TEMPLATE translated from the model's {family} chat template"
            + ("; checked to render the same prompt text." if verified else "; it differs from the original in details: check before relying on it."))
    lines += [f"# {note}", f'TEMPLATE """{OLLAMA_TEMPLATES[family]}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return Modelfile("\n".join(lines) + "\n", family, verified, stops, note)


# --- the proof -------------------------------------------------------------------------------------


def load_gguf(folder: Path, name: str) -> Any:
    """The GGUF read back by transformers, de-quantised to float32."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32, trust_remote_code=False)
    return model.eval()


def tokenizer_agrees(source_tokenizer: Any, folder: Path, name: str, prompts: list[str]) -> list[dict[str, Any]]:
    """The tokenizer rebuilt from the GGUF's metadata gives the same ids on the chat-formatted prompts."""
    from transformers import AutoTokenizer

    rebuilt = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    rows = []
    for prompt in prompts:
        text = chat_inputs(source_tokenizer, prompt)["input_ids"][0].tolist()
        source_text = source_tokenizer.decode(text)
        rows.append({"prompt": prompt, "same_ids": rebuilt(source_text, add_special_tokens=False).input_ids == text})
    return rows


def prove(source_dir: Path, out_dir: Path, gguf: GgufFile) -> dict[str, Any]:
    """Fixed prompts through the float32 source and the GGUF read back: max |Δ logit| within the type's bound,
    the same greedy tokens, and the GGUF's own tokenizer giving the same ids."""
    bound = LOGIT_BOUNDS[gguf.output_type]
    prompts = merging.PROBE_PROMPTS["generative"]
    tokenizer = loading.load_tokenizer(source_dir)
    source = loading.load_plain(source_dir, "sft")
    reference = merging.probe(source, tokenizer, "sft", prompts)
    del source
    exported = load_gguf(out_dir, gguf.name)
    candidate = merging.probe(exported, tokenizer, "sft", prompts)
    del exported
    evidence = merging.compare(reference, candidate, prompts, "sft", atol=bound, rtol=0.0,
                               output_keys=("source_output", "gguf_output"))
    tokenizer_rows = tokenizer_agrees(tokenizer, out_dir, gguf.name, prompts)
    for row, check in zip(evidence["prompts"], tokenizer_rows, strict=True):
        row["tokenizer_ids_match"] = check["same_ids"]
        row["passed"] = row["passed"] and check["same_ids"]
    evidence["passed"] = all(row["passed"] for row in evidence["prompts"])
    evidence.update({"output_type": gguf.output_type, "bound": bound, "compared_with": "the float32 source model"})
    return evidence


def export_and_prove(source_dir: Path, out_dir: Path, output_type: str, name: str) -> dict[str, Any]:
    """Write <name>-<type>.gguf and its Modelfile to `out_dir`, then the evidence; the caller decides on `passed`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    file_name = f"{safe_stem(name)}-{output_type}.gguf"
    written = write_gguf(source_dir, out_dir / file_name, output_type, name)
    modelfile = ollama_modelfile(source_dir, file_name)
    (out_dir / "Modelfile").write_text(modelfile.text)
    evidence = prove(source_dir, out_dir, written)
    evidence["file"] = asdict(written)
    evidence["modelfile"] = {key: value for key, value in asdict(modelfile).items() if key != "text"}
    return evidence


def safe_stem(name: str) -> str:
    """A file name stem from a model name: ASCII letters, digits, - _ . only."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "-" for c in name).strip("-.") or "model"
