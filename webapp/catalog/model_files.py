"""Reading and preparing model folders on disk (plain Python, no Django): inspect, convert GGUF, fetch."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from webapp.lib.errors import LayercakeError

logger = logging.getLogger(__name__)

# What a model family can be fine-tuned for (API.md task vocabulary).
TASKS_BY_FAMILY: dict[str, list[str]] = {
    "causal_lm": ["sft", "text"],
    "encoder": ["classification", "token_classification"],
    "seq2seq": ["seq2seq"],
}
# Files worth keeping from a model folder: weights in safetensors only, never pickles.
# checksums.sha256 is the training engine's `sha256sum -c` list; it travels with the artifact.
KEPT_SUFFIXES = {".json", ".safetensors", ".txt", ".model", ".jinja", ".md", ".tiktoken", ".sha256"}
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64"}


@dataclass(frozen=True)
class ModelFacts:
    """What the catalog records about a model folder."""

    architecture: str
    model_type: str
    family: str
    parameter_count: int
    dtype: str
    tasks: list[str]
    has_chat_template: bool
    licence: str


def read_safetensors_header(path: Path) -> dict[str, dict]:
    # The header is a little-endian u64 length then JSON: enough to count parameters without loading.
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 100 * 1024 * 1024:
            raise LayercakeError(f"{path.name} is not a valid safetensors file (header too large).")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def count_parameters(folder: Path) -> tuple[int, str]:
    """Parameters stored in the folder's safetensors files and their most common dtype."""
    total = 0
    dtypes: Counter[str] = Counter()
    for weights in sorted(folder.glob("*.safetensors")):
        for tensor in read_safetensors_header(weights).values():
            numel = 1
            for dim in tensor["shape"]:
                numel *= dim
            total += numel
            dtypes[tensor["dtype"]] += numel
    if not total:
        raise LayercakeError(f"No safetensors weights in {folder.name}: only safetensors files are loaded.")
    dtype = SAFETENSORS_DTYPES.get(dtypes.most_common(1)[0][0], dtypes.most_common(1)[0][0].lower())
    return total, dtype


def family_of(config: dict) -> str:
    architectures = " ".join(config.get("architectures") or [])
    if config.get("is_encoder_decoder") or "ConditionalGeneration" in architectures:
        return "seq2seq"
    if "CausalLM" in architectures or "LMHead" in architectures:
        return "causal_lm"
    return "encoder"


def licence_from_card(folder: Path) -> str:
    card = folder / "README.md"
    if not card.exists():
        return ""
    match = re.search(r"^licen[cs]e:\s*(\S+)", card.read_text(errors="replace")[:4000], re.MULTILINE)
    return match.group(1).strip("'\"") if match else ""


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    tokenizer_config = folder / "tokenizer_config.json"
    return tokenizer_config.exists() and bool(json.loads(tokenizer_config.read_text()).get("chat_template"))


def inspect_model_folder(folder: Path, licence: str = "") -> ModelFacts:
    config_file = folder / "config.json"
    if not config_file.exists():
        raise LayercakeError(f"{folder.name} is not a Hugging Face model folder: config.json is missing.")
    config = json.loads(config_file.read_text())
    family = family_of(config)
    parameter_count, dtype = count_parameters(folder)
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    return ModelFacts(
        architecture=architectures[0],
        model_type=config.get("model_type", ""),
        family=family,
        parameter_count=parameter_count,
        dtype=dtype,
        tasks=TASKS_BY_FAMILY[family],
        has_chat_template=has_chat_template(folder),
        licence=licence or licence_from_card(folder),
    )


def kept_files(folder: Path) -> list[Path]:
    """Files to store from a model folder, relative paths, pickles and VCS files left out."""
    kept = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and path.suffix in KEPT_SUFFIXES and not any(p.startswith(".") for p in relative.parts):
            kept.append(relative)
    return kept


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """De-quantize a GGUF file into a float32 safetensors folder that transformers loads directly."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("converting %s to safetensors in %s", gguf_file.name, out_dir)
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # GGUF load de-quantizes to float32, but the quantizer stays attached and
    # save_pretrained would refuse (or write a quantization_config nothing can honour).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp_dir, safe_serialization=True)
    tokenizer.save_pretrained(tmp_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_dir.rename(out_dir)
    return out_dir


def download_from_hub(repo_id: str, out_dir: Path) -> Path:
    """Fetch a hub model's safetensors, config and tokenizer files (deployments with network only)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise LayercakeError(
            f"Cannot fetch {repo_id}: this deployment is offline (HF_HUB_OFFLINE). "
            "Import a local folder or a GGUF file instead."
        )
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(
            repo_id,
            local_dir=out_dir,
            allow_patterns=[f"*{suffix}" for suffix in KEPT_SUFFIXES],
        )
    except Exception as error:  # network, auth, missing repo: all end as one actionable message
        raise LayercakeError(f"Could not download {repo_id} from the Hugging Face hub: {error}") from error
    return out_dir
