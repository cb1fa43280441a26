"""Preference tuning: DPO, ORPO and KTO through TRL's trainers on the tiny causal LM, measured before and after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs.training import SpecError
from jobs.training.engine import plan_run, train
from jobs.training.execution import plan_execution
from tests.training.conftest import make_spec

_WORDS = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book", "green", "apple", "river", "house"]


def preference_pairs(count: int = 48) -> list[dict[str, Any]]:
    """Prefer repeating the word to refusing: a preference the tiny model can learn in a few steps."""
    return [
        {
            "prompt": [{"role": "user", "content": f"Say {word}."}],
            "chosen": f"{word} {word}",
            "rejected": "I will not.",
        }
        for word in (_WORDS * 8)[:count]
    ]


def unpaired_rows(count: int = 48) -> list[dict[str, Any]]:
    return [
        {"prompt": [{"role": "user", "content": f"Say {word}."}], "completion": f"{word} {word}" if i % 2 else "No.",
         "label": bool(i % 2)}
        for i, word in enumerate((_WORDS * 8)[:count])
    ]


@pytest.mark.parametrize(
    ("objective", "method"), [("dpo", "lora"), ("orpo", "lora"), ("kto", "lora"), ("simpo", "lora"), ("dpo", "full")]
)
def test_preference_objective_moves_the_model_towards_the_chosen_answers(
    tmp_path: Path, tiny_lm: Path, objective: str, method: str
) -> None:
    rows = preference_pairs()
    spec = make_spec(
        tmp_path, tiny_lm, "preference", method, rows[:40], validation_rows=rows[40:],
        objective=objective, epochs=3, learning_rate=5e-3 if method == "lora" else 1e-3, beta=0.5,
    )
    result = train(spec)
    base, tuned = result.metrics["base"]["main"], result.metrics["tuned"]["main"]
    assert set(base) == {"loss", "reward_accuracy", "reward_margin", "pairs_scored"}
    assert base["pairs_scored"] == tuned["pairs_scored"] == len(rows[40:])
    # The model itself now prefers the chosen answers, by a wider margin than the base did.
    assert tuned["reward_margin"] > base["reward_margin"], (base, tuned)
    assert tuned["reward_accuracy"] >= max(base["reward_accuracy"], 0.75), (base, tuned)
    assert result.summary.tokens_seen > 0
    assert result.summary.train_rows == 40
    artifact = result.artifact_dir
    assert artifact is not None
    if method == "lora":
        # Only the trained adapter is saved: not DPO's reference copy of it.
        assert json.loads((artifact / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
        assert not (artifact / "ref").exists()
    card = (artifact / "README.md").read_text()
    assert "preference" in card


def test_kto_reads_unpaired_rows_and_dpo_refuses_them(tmp_path: Path, tiny_lm: Path) -> None:
    rows = unpaired_rows()
    spec = make_spec(tmp_path, tiny_lm, "preference", "lora", rows, objective="kto", epochs=1)
    result = train(spec)
    assert {"loss", "desirable_log_prob", "undesirable_log_prob"} <= set(result.metrics["tuned"]["main"])
    refused = make_spec(tmp_path / "dpo", tiny_lm, "preference", "lora", rows, objective="dpo")
    with pytest.raises(SpecError, match="Choose the kto objective"):
        train(refused)


def test_plan_counts_pairs_and_kto_halves(tmp_path: Path, tiny_lm: Path) -> None:
    rows = preference_pairs(40)
    for objective, examples in (("dpo", 36), ("kto", 72)):
        spec = make_spec(tmp_path / objective, tiny_lm, "preference", "lora", rows, objective=objective, eval_fraction=0.1)
        hp = spec.hyperparameters
        execution = plan_execution("preference", "lora", "llama", "cpu", packing=hp.packing)
        plan = plan_run(tiny_lm, "preference", "lora", spec.datasets, hp, execution)
        assert plan.train_rows == 36 and plan.train_examples == examples
