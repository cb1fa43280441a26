"""Loading catalog folders into transformers/peft for inference (plain Python, no Django): tasks, heads, adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.training import registry


def is_adapter_folder(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def read_adapter_config(folder: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((folder / "adapter_config.json").read_text())
    return config


def task_of_folder(folder: Path) -> str:
    """What a folder's model does: from peft's task type for adapters, else from the architecture's head."""
    if is_adapter_folder(folder):
        return task_of_adapter_config(read_adapter_config(folder), _head_config(folder / "config.json"))
    return task_of_config(json.loads((folder / "config.json").read_text()))


def _head_config(path: Path) -> dict[str, Any] | None:
    """The config.json a classifier adapter saves beside its weights, if it is there and an object; else None."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def task_of_adapter_config(adapter_config: dict[str, Any], head_config: dict[str, Any] | None = None) -> str:
    """From peft's task type; the config.json a classifier adapter saves tells regression from classification."""
    return registry.task_of_peft_type(adapter_config.get("task_type"), (head_config or {}).get("problem_type"))


def task_of_config(config: dict[str, Any]) -> str:
    """What a model's config.json says it does, from the architecture's head (and its problem_type)."""
    return registry.task_of_architectures(
        config.get("architectures") or [], bool(config.get("is_encoder_decoder")), config.get("problem_type")
    )


def load_tokenizer(folder: Path, fallback: Path | None = None) -> Any:
    """The folder's tokenizer (adapters carry one), else the base's; always with a pad token."""
    from transformers import AutoTokenizer

    source = folder if (folder / "tokenizer_config.json").exists() or fallback is None else fallback
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_plain(folder: Path, task: str | None = None) -> Any:
    """A base, full or merged model in float32, eval mode, safetensors only."""
    import torch

    task = task or task_of_folder(folder)
    model = registry.auto_class(task).from_pretrained(folder, use_safetensors=True, dtype=torch.float32, trust_remote_code=False)
    return model.eval()


def head_config(adapter_dir: Path, base_dir: Path) -> Any:
    """A classifier adapter saves config.json with num_labels and id2label; the base's config does not know them."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(adapter_dir if (adapter_dir / "config.json").exists() else base_dir, trust_remote_code=False)


def head_signature(adapter_dir: Path) -> str:
    """Adapters whose task head has the same shape can share one resident base; others need their own."""
    task = task_of_folder(adapter_dir)
    if task not in registry.CLASSIFIER_TASKS:
        return task
    labels = "?"
    if (adapter_dir / "config.json").exists():
        labels = str(len(json.loads((adapter_dir / "config.json").read_text()).get("id2label") or {}))
    return f"{task}:{labels}"


def load_base_for_adapter(adapter_dir: Path, base_dir: Path) -> Any:
    """The base with the head the adapter was trained with (classifier size from the adapter's config)."""
    import torch

    task = task_of_folder(adapter_dir)
    kwargs: dict[str, Any] = {"use_safetensors": True, "dtype": torch.float32}
    if task in registry.CLASSIFIER_TASKS:
        kwargs["config"] = head_config(adapter_dir, base_dir)
    return registry.auto_class(task).from_pretrained(base_dir, trust_remote_code=False, **kwargs).eval()


def attach_adapter(base: Any, adapter_dir: Path, adapter_name: str = "default") -> Any:
    """Wrap a loaded base with a first adapter (peft PeftModel), frozen for inference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, adapter_dir, adapter_name=adapter_name, is_trainable=False).eval()


def load_adapter_on_base(adapter_dir: Path, base_dir: Path) -> Any:
    return attach_adapter(load_base_for_adapter(adapter_dir, base_dir), adapter_dir)
