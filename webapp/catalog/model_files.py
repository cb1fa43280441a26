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

from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)

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
    has_chat_template: bool
    licence: str


# Bytes per element of each safetensors dtype: a tensor's shape must account for exactly its bytes.
SAFETENSORS_ITEM_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024


def invalid_file(name: str, why: str) -> LayercakeError:
    return LayercakeError(f"{name} is not a valid safetensors file: {why}.", [RowError(None, name, why)])


def _plain_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """The header of an untrusted safetensors file, every field checked against the file's real size.

    The format is a little-endian u64 header length, a JSON object name -> {dtype, shape, data_offsets},
    then the tensor bytes. Each tensor's shape must account for exactly its byte range, and every range must
    lie inside the file: a header cannot claim a 1e12-element tensor in a 4-byte file.
    """
    size = path.stat().st_size
    if size < 8:
        raise invalid_file(path.name, "it is empty or truncated")
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length < 2 or length > MAX_SAFETENSORS_HEADER_BYTES or 8 + length > size:
            raise invalid_file(path.name, f"its header length ({length} bytes) does not fit a {size}-byte file")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise invalid_file(path.name, "its header is not JSON") from None
    if not isinstance(header, dict):
        raise invalid_file(path.name, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid_file(path.name, "its __metadata__ is not an object")
    data_bytes = size - 8 - length
    for name, tensor in header.items():
        if not isinstance(tensor, dict):
            raise invalid_file(path.name, f"tensor {name!r} is not described by an object")
        dtype, shape, offsets = tensor.get("dtype"), tensor.get("shape"), tensor.get("data_offsets")
        if dtype not in SAFETENSORS_ITEM_BYTES:
            raise invalid_file(path.name, f"tensor {name!r} has an unknown dtype {str(dtype)[:20]!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_plain_int(dim) for dim in shape):
            raise invalid_file(path.name, f"tensor {name!r} has no valid shape (a list of non-negative integers)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_plain_int(o) for o in offsets)):
            raise invalid_file(path.name, f"tensor {name!r} has no valid data_offsets")
        begin, end = offsets
        if not begin <= end <= data_bytes:
            raise invalid_file(path.name, f"tensor {name!r} points past the end of the file")
        elements = 1
        for dim in shape:
            elements *= dim
        if elements * SAFETENSORS_ITEM_BYTES[dtype] != end - begin:
            raise invalid_file(path.name, f"tensor {name!r}: shape {shape} does not match its {end - begin} bytes")
    return header


def read_json_file(path: Path, what: str = "") -> dict:
    """An untrusted JSON object file (config.json, tokenizer_config.json ...): a clear error when it is not one."""
    label = what or path.name
    if path.stat().st_size > 64 * 1024 * 1024:
        raise LayercakeError(f"{label} is too large for a configuration file.")
    try:
        value = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as error:
        raise LayercakeError(f"{label} is not valid JSON: {str(error)[:200]}.", [RowError(None, label, "not JSON")]) from None
    if not isinstance(value, dict):
        raise LayercakeError(f"{label} must hold a JSON object, not a {type(value).__name__}.")
    return value


def check_no_custom_code(config: dict, label: str = "config.json") -> None:
    """Layercake never runs code shipped with a model: refuse `auto_map` and model types transformers lacks."""
    if config.get("auto_map"):
        raise LayercakeError(
            f"{label} asks for custom code (auto_map): Layercake never runs code shipped with a model "
            "(trust_remote_code stays off). Use a model whose architecture transformers includes.",
            [RowError(None, "auto_map", "custom code is not run")],
        )
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        shown = str(model_type)[:40] if model_type is not None else "missing"
        raise LayercakeError(
            f"{label} has model_type {shown!r}, which this version of transformers does not know: "
            "only architectures built into transformers can be imported.",
            [RowError(None, "model_type", f"unknown model_type {shown!r}")],
        )
    architectures = config.get("architectures")
    if architectures is not None and not (
        isinstance(architectures, list) and all(isinstance(name, str) for name in architectures)
    ):
        raise LayercakeError(f"{label}: architectures must be a list of class names.")


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
    return tokenizer_config.exists() and bool(read_json_file(tokenizer_config).get("chat_template"))


def inspect_model_folder(folder: Path, licence: str = "") -> ModelFacts:
    config_file = folder / "config.json"
    if not config_file.exists():
        raise LayercakeError(f"{folder.name} is not a Hugging Face model folder: config.json is missing.")
    config = read_json_file(config_file, "config.json")
    check_no_custom_code(config)
    for extra in ("generation_config.json", "tokenizer.json", "special_tokens_map.json"):
        if (folder / extra).exists():
            read_json_file(folder / extra)
    family = family_of(config)
    parameter_count, dtype = count_parameters(folder)
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    return ModelFacts(
        architecture=architectures[0],
        model_type=config.get("model_type", ""),
        family=family,
        parameter_count=parameter_count,
        dtype=dtype,
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


def check_gguf(gguf_file: Path) -> None:
    """Parse an untrusted GGUF file's header and tensor table with the `gguf` library before transformers sees it."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(gguf_file)
        tensors = len(reader.tensors)
    except Exception as error:  # the reader raises ValueError, struct/numpy errors ... on malformed files
        raise LayercakeError(f"{gguf_file.name} is not a readable GGUF file: {str(error)[:200]}.") from None
    if not tensors:
        raise LayercakeError(f"{gguf_file.name} holds no tensors: it is not a model.")


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """De-quantize a GGUF file into a float32 safetensors folder that transformers loads directly."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(gguf_file)
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("converting %s to safetensors in %s", gguf_file.name, out_dir)
    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
        # GGUF load de-quantizes to float32, but the quantizer stays attached and
        # save_pretrained would refuse (or write a quantization_config nothing can honour).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
    except Exception as error:  # a GGUF that parses but is not a model transformers can build
        shutil.rmtree(tmp_dir, ignore_errors=True)
        logger.info("GGUF %s refused: %r", gguf_file.name, error)
        raise LayercakeError(
            f"{gguf_file.name} could not be read as a model: {str(error)[:200] or type(error).__name__}. "
            "Layercake reads GGUF models of the architectures transformers supports (Llama, Mistral, Qwen2, ...)."
        ) from None
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
