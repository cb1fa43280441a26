"""The artifact is a standard save_pretrained folder: it loads with plain transformers/peft in a fresh process that
never imports the project, predicts what the trained model predicted, and carries a card, metrics and checksums."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from jobs.training import TrainingResult
from jobs.training.engine import train
from tests.training.conftest import classification_rows, instruction_rows, make_spec, seq2seq_rows, token_rows

TEXTS = ["the food was great and fun", "the food was awful and cold"]

# Runs with `python -I` from an empty folder: no project on sys.path, no PYTHONPATH, only installed packages.
LOADER = r"""
import json, os, sys
import torch, transformers
from peft import PeftModel
texts = json.loads(sys.argv[1])
outputs = []
for artifact, base, auto_class in json.loads(sys.argv[2]):
    Auto = getattr(transformers, auto_class)
    if os.path.exists(os.path.join(artifact, "adapter_config.json")):
        kwargs = {}
        if os.path.exists(os.path.join(artifact, "config.json")):
            kwargs["config"] = transformers.AutoConfig.from_pretrained(artifact)  # num_labels, id2label
        model = PeftModel.from_pretrained(Auto.from_pretrained(base, **kwargs), artifact)
    else:
        model = Auto.from_pretrained(artifact)
    model.eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(artifact)
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    extra = {}
    if model.config.is_encoder_decoder:
        extra["decoder_input_ids"] = torch.zeros((len(texts), 1), dtype=torch.long)
    with torch.no_grad():
        logits = model(**inputs, **extra).logits
    outputs.append({"logits": logits.tolist(), "id2label": getattr(model.config, "id2label", None)})
assert not any(name == "jobs" or name.startswith("jobs.") for name in sys.modules)
print(json.dumps(outputs))
"""

CASES = {
    "lora-classifier": (
        "encoder",
        "classification",
        "lora",
        classification_rows(32),
        "AutoModelForSequenceClassification",
    ),
    "full-classifier": (
        "encoder",
        "classification",
        "full",
        classification_rows(32),
        "AutoModelForSequenceClassification",
    ),
    "head-tagger": ("encoder", "token_classification", "head", token_rows(16), "AutoModelForTokenClassification"),
    "lora-sft": ("lm", "sft", "lora", instruction_rows(16), "AutoModelForCausalLM"),
    "prompt-tuning-sft": ("lm", "sft", "prompt_tuning", instruction_rows(16), "AutoModelForCausalLM"),
    "freeze-sft": ("lm", "sft", "freeze", instruction_rows(16), "AutoModelForCausalLM"),
    "lora-seq2seq": ("seq2seq", "seq2seq", "lora", seq2seq_rows(16), "AutoModelForSeq2SeqLM"),
}


def _logits(model, texts: list[str], artifact_dir: Path) -> torch.Tensor:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(artifact_dir)
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    extra = {}
    if model.config.is_encoder_decoder:
        extra["decoder_input_ids"] = torch.zeros((len(texts), 1), dtype=torch.long)
    with torch.no_grad():
        return model(**inputs, **extra).logits


@pytest.fixture(scope="module")
def bases(tiny_encoder: Path, tiny_lm: Path, tiny_seq2seq: Path) -> dict[str, Path]:
    return {"encoder": tiny_encoder, "lm": tiny_lm, "seq2seq": tiny_seq2seq}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bases: dict[str, Path]) -> dict[str, TrainingResult]:
    """Each case trained once for the module, one epoch; the tests only read the results and their artifacts."""
    return {
        name: train(make_spec(tmp_path_factory.mktemp(name), bases[base_name], task, method, rows, epochs=1))
        for name, (base_name, task, method, rows, _) in CASES.items()
    }


@pytest.fixture(scope="module")
def trained_and_reloaded(tmp_path_factory, bases: dict[str, Path], trained: dict[str, TrainingResult]) -> dict:
    """Every artifact reloaded in ONE fresh process (imports cost seconds each)."""
    in_process, jobs = {}, []
    for name, (base_name, _, _, _, auto_class) in CASES.items():
        result = trained[name]
        in_process[name] = _logits(result.model, TEXTS, result.artifact_dir)
        jobs.append([str(result.artifact_dir), str(bases[base_name]), auto_class])
    empty = tmp_path_factory.mktemp("elsewhere")
    # `python -I` from an empty folder: no project on sys.path, no PYTHONPATH, only installed packages.
    completed = subprocess.run(
        [sys.executable, "-I", "-c", LOADER, json.dumps(TEXTS), json.dumps(jobs)],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    reloaded = json.loads(completed.stdout.strip().splitlines()[-1])
    return {name: (in_process[name], reloaded[i]) for i, name in enumerate(CASES)}


@pytest.mark.parametrize("case", list(CASES))
def test_artifact_loads_in_a_fresh_process_with_the_same_logits(trained_and_reloaded: dict, case: str) -> None:
    expected, output = trained_and_reloaded[case]
    assert torch.allclose(torch.tensor(output["logits"]), expected, atol=1e-5)
    if CASES[case][1] == "classification":
        assert set(output["id2label"].values()) == {"negative", "positive"}


def test_adapter_names_its_base_and_classifier_keeps_its_labels(trained: dict[str, TrainingResult]) -> None:
    result = trained["lora-classifier"]
    adapter_config = json.loads((result.artifact_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "layercake/tiny-base"
    config = json.loads((result.artifact_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert result.kind == "adapter"


def test_checksums_cover_every_other_file_in_sha256sum_format(trained: dict[str, TrainingResult]) -> None:
    result = trained["lora-sft"]
    listed = (result.artifact_dir / "checksums.sha256").read_text().splitlines()
    files = sorted(p.name for p in result.artifact_dir.iterdir() if p.name != "checksums.sha256")
    assert sorted(line.split("  ", 1)[1] for line in listed) == files
    check = subprocess.run(["sha256sum", "-c", "checksums.sha256"], cwd=result.artifact_dir, capture_output=True)
    assert check.returncode == 0, check.stdout


def test_model_card_front_matter_describes_the_run(trained: dict[str, TrainingResult]) -> None:
    result = trained["lora-sft"]
    card = (result.artifact_dir / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == "layercake/tiny-base"
    assert front["library_name"] == "peft"
    assert front["method"] == "lora"
    assert front["datasets"] == ["main"]
    assert front["hyperparameters"]["lora_r"] > 0
    assert front["metrics"]["tuned"]["main"]["loss"] == result.metrics["tuned"]["main"]["loss"]
    metrics = json.loads((result.artifact_dir / "metrics.json").read_text())
    assert metrics["base"] == result.metrics["base"]
    arguments = json.loads((result.artifact_dir / "training_args.json").read_text())
    assert arguments["hyperparameters"]["epochs"] == 1.0
