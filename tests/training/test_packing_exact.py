"""Padding-free "bfd" packing is exact: every packed row's loss equals that row's loss run on its own."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.data_utils import pack_dataset
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from jobs.training import engine
from jobs.training.engine import train
from tests.training.conftest import make_spec

TOLERANCE = 1e-3
PACKED_LENGTH = 96


@dataclasses.dataclass
class PackedRow:
    """One row's per-token log-probs of its own next tokens: run alone, inside the packed batch, and wrapped."""

    alone: torch.Tensor
    packed: torch.Tensor
    wrapped: torch.Tensor


def _next_token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(label[i + 1] | tokens[..i]) at each position i, and where that label counts (not -100)."""
    logits, labels = logits[0, :-1].float(), labels[0, 1:]
    counted = labels != -100
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    return log_probs, counted


@pytest.fixture(scope="module")
def packed_rows(tiny_lm: Path) -> list[PackedRow]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    # SDPA is what a CUDA worker without flash-attn runs: transformers must turn the restarting position_ids of the
    # flattened batch into a block-diagonal causal mask.
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, attn_implementation="sdpa").eval()
    texts = [
        f"Row {index}: " + "The cat likes the book. " * repeats for index, repeats in enumerate([1, 5, 2, 8, 3, 1])
    ]
    rows = [tokenizer(text)["input_ids"] for text in texts]

    packed = pack_dataset(Dataset.from_dict({"input_ids": rows}), PACKED_LENGTH, "bfd")
    examples = [packed[index] for index in range(len(packed))]
    assert len(examples) >= 2 and any(len(example["seq_lengths"]) >= 2 for example in examples)
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1

    position_ids = batch["position_ids"][0]
    starts = (position_ids == 0).nonzero().flatten().tolist()
    bounds = list(zip(starts, [*starts[1:], position_ids.numel()], strict=True))
    # Nothing truncated or lost: the flattened batch holds each row once, whole.
    assert sorted(batch["input_ids"][0, start:end].tolist() for start, end in bounds) == sorted(rows)
    # The collator stops a row's last token from being trained to predict the next row's first token.
    assert (batch["labels"][0, starts] == -100).all()

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    flat = batch["input_ids"]
    with torch.no_grad():
        # use_cache=False as TRL's SFTTrainer.compute_loss passes it: with a KV cache transformers skips the
        # packed-sequence mask and every row attends to the rows before it.
        packed_logits = model(**inputs, use_cache=False).logits
        # The negative control: the same tokens, positions counting on across rows (as in "wrapped").
        wrapped_logits = model(input_ids=flat, position_ids=torch.arange(flat.shape[1])[None], use_cache=False).logits
    packed_log_probs, counted = _next_token_log_probs(packed_logits, batch["labels"])
    wrapped_log_probs, _ = _next_token_log_probs(wrapped_logits, batch["labels"])

    results = []
    for start, end in bounds:
        row = flat[:, start:end]
        with torch.no_grad():
            alone_log_probs, _ = _next_token_log_probs(model(input_ids=row, use_cache=False).logits, row)
        # Position end - 1 is the row's last token, whose label is the next row's first: not counted.
        assert counted[start : end - 1].all() and (end - 1 == counted.numel() or not counted[end - 1])
        results.append(
            PackedRow(alone_log_probs, packed_log_probs[start : end - 1], wrapped_log_probs[start : end - 1])
        )
    assert int(counted.sum()) == sum(len(row) - 1 for row in rows)
    return results


def test_each_packed_row_has_the_loss_it_has_alone(packed_rows: list[PackedRow]) -> None:
    for index, row in enumerate(packed_rows):
        token_difference = (row.packed - row.alone).abs().max().item()
        loss_difference = abs(row.packed.sum().item() - row.alone.sum().item())
        assert token_difference < TOLERANCE, f"row {index}: per-token log-prob off by {token_difference:.2e}"
        assert loss_difference < TOLERANCE, f"row {index}: summed loss off by {loss_difference:.2e}"


def test_rows_flattened_without_restarting_positions_attend_to_each_other(packed_rows: list[PackedRow]) -> None:
    # Shows the comparison above can fail: the first row sees nothing before it, every later one changes.
    differences = [(row.wrapped - row.alone).abs().max().item() for row in packed_rows]
    assert differences[0] < TOLERANCE
    assert max(differences) > TOLERANCE
    assert sum(difference > TOLERANCE for difference in differences) == len(packed_rows) - 1


def _rows_of_varied_length(count: int) -> list[dict[str, str]]:
    words = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book"]
    return [
        {"instruction": "Write some words.", "input": "", "output": " ".join(words[: 1 + index % 8] * (1 + index % 3))}
        for index in range(count)
    ]


def test_engine_trains_padding_free_bfd_end_to_end(
    tmp_path: Path, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CPU plan packs "wrapped"; force the CUDA plan's strategy to run the padding-free path here.
    plan = engine.plan_execution

    def plan_bfd(*args: Any, **kwargs: Any) -> Any:
        return dataclasses.replace(plan(*args, **kwargs), packing_strategy="bfd")

    monkeypatch.setattr(engine, "plan_execution", plan_bfd)
    training_forwards: list[dict[str, Any]] = []
    prepare = engine.prepare_model

    def prepare_and_watch(*args: Any, **kwargs: Any) -> Any:
        model = prepare(*args, **kwargs)

        def record(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if module.training:
                training_forwards.append(dict(kwargs))

        model.register_forward_pre_hook(record, with_kwargs=True)
        return model

    monkeypatch.setattr(engine, "prepare_model", prepare_and_watch)

    spec = make_spec(
        tmp_path, tiny_lm, "sft", "lora", _rows_of_varied_length(24), epochs=1, max_length=128, packing=True
    )
    result = train(spec)

    assert result.artifact_dir is not None
    execution = json.loads((result.artifact_dir / "training_args.json").read_text())["execution"]
    assert execution["packing_strategy"] == "bfd"
    assert result.summary.real_tokens == result.summary.tokens_seen > 0
    losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    # What the model saw in training is what the exactness proof above covers: one flattened row per batch with
    # restarting positions, no attention mask, no KV cache.
    assert training_forwards
    for forward in training_forwards:
        assert forward.get("attention_mask") is None and forward.get("use_cache") is False
        assert forward["input_ids"].shape[0] == 1
        assert int((forward["position_ids"] == 0).sum()) >= 2
