"""Writing the result folder: weights via save_pretrained (safetensors only), model card, metrics, checksums."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml
from peft import PeftModel

from jobs.training import registry
from jobs.training.checksums import write_checksums

# Pickle-based formats must never reach the catalog: a downloaded pickle runs code when loaded.
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def model_card(
    *,
    base_model: str,
    adapter: bool,
    task: str,
    method: str,
    dataset_names: list[str],
    metrics: dict[str, Any],
    hyperparameters: dict[str, Any],
    summary: dict[str, Any],
) -> str:
    """A Hugging Face model card: YAML front matter the hub and our catalog read, then a short human summary."""
    front = {
        "base_model": base_model,
        "library_name": "peft" if adapter else "transformers",
        "pipeline_tag": registry.task(task).pipeline_tag,
        "tags": ["layercake", task, method] + (["peft", "adapter"] if adapter else []),
        "datasets": dataset_names,
        "method": method,
        "task": task,
        "metrics": metrics,
        "hyperparameters": hyperparameters,
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {method} fine-tune of {base_model}",
        "",
        f"Task: `{task}`. Method: `{method}`. Trained with Layercake on: {', '.join(dataset_names)}.",
        "",
        "## Metrics on the validation split",
        "",
        "| dataset | metric | base | tuned |",
        "|---|---|---|---|",
    ]
    for dataset, tuned in metrics.get("tuned", {}).items():
        base = metrics.get("base", {}).get(dataset, {})
        for name, value in tuned.items():
            lines.append(f"| {dataset} | {name} | {base.get(name, '')} | {value} |")
    lines += ["", "## Training", ""]
    lines += [f"- {key}: {value}" for key, value in summary.items()]
    if adapter:
        lines += [
            "",
            "## Use",
            "",
            "```python",
            "from peft import PeftModel",
            f"from transformers import {registry.task(task).model_class}",
            f"base = {registry.task(task).model_class}.from_pretrained({base_model!r})",
            "model = PeftModel.from_pretrained(base, 'path/to/this/folder')",
            "```",
        ]
        if registry.task(task).classifier:
            lines.insert(
                -5,
                "# classifiers: pass config=AutoConfig.from_pretrained('path/to/this/folder') for the labels",
            )
    return "\n".join(lines) + "\n"


def save_artifact(
    *,
    output_dir: Path,
    model: Any,
    tokenizer: Any,
    base_model_name: str,
    card: str,
    metrics: dict[str, Any],
    training_args: dict[str, Any],
    save_config: bool,
) -> Path:
    """Write into a sibling '.partial' folder, then swap it in, so a crash never leaves half an artifact."""
    output_dir = Path(output_dir)
    partial = output_dir.with_name(output_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    if isinstance(model, PeftModel):
        model.save_pretrained(partial, safe_serialization=True)
        # Renamed after saving: peft's save reads the base's config by this name to detect a resized vocabulary,
        # and a catalog name such as "SmolLM2-135M-Instruct" is no folder here.
        config = model.peft_config["default"]
        config.base_model_name_or_path = base_model_name
        config.save_pretrained(partial)
        if save_config:
            # Classifier adapters: config.json carries num_labels and id2label, which the base does not know.
            model.get_base_model().config.save_pretrained(partial)
    else:
        model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "README.md").write_text(card, encoding="utf-8")
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True), encoding="utf-8")
    (partial / "training_args.json").write_text(
        json.dumps(training_args, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    forbidden = [p.name for p in partial.rglob("*") if p.suffix in FORBIDDEN_SUFFIXES]
    if forbidden:
        raise RuntimeError(f"Refusing to publish pickle-format files: {forbidden}")
    write_checksums(partial)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    partial.rename(output_dir)
    return output_dir
