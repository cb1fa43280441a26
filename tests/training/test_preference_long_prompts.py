"""Preference pairs whose prompt fills max_length: the plan counts what the run trains, refuses a set left empty, and
the pair accuracy is taken over the pairs that keep an answer token."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from jobs.training import SpecError
from jobs.training.engine import plan_run, train
from jobs.training.execution import plan_execution
from jobs.training.metrics import preference_metrics
from tests.training.conftest import make_spec
from tests.training.test_preference import preference_pairs

# At max_length 32 on the tiny model's ChatML template a short prompt ("Say cat.") takes 15 tokens and leaves room for
# its answer; a long one takes 43 or more (43 for cat, dog, red and blue, the first four words), and leaves none.
MAX_LENGTH = 32
LONG_PROMPT_TOKENS = 43


def long_prompt_pairs(count: int) -> list[dict[str, Any]]:
    pairs = preference_pairs(count)
    for pair in pairs:
        text = pair["prompt"][0]["content"]
        pair["prompt"] = [{"role": "user", "content": f"{text} " + "the river runs by the house " * 3}]
    return pairs


def planned(spec: Any, notes: list[str] | None = None) -> Any:
    hp = spec.hyperparameters
    execution = plan_execution("preference", spec.method, "llama", "cpu", packing=hp.packing)
    return plan_run(spec.base_model_dir, "preference", spec.method, spec.datasets, hp, execution, notes=notes)


@pytest.mark.parametrize(("objective", "kept"), [("dpo", 24), ("kto", 48), ("orpo", 24)])
def test_plan_counts_the_pairs_and_steps_the_run_trains_when_some_prompts_fill_max_length(
    tmp_path: Path, tiny_lm: Path, objective: str, kept: int
) -> None:
    short, long = preference_pairs(24), long_prompt_pairs(12)
    rows = [row for trio in zip(short[0::2], short[1::2], long, strict=True) for row in trio]
    spec = make_spec(
        tmp_path, tiny_lm, "preference", "lora", rows, validation_rows=preference_pairs(4) + long_prompt_pairs(4),
        objective=objective, epochs=1, batch_size=4, max_length=MAX_LENGTH,
    )
    notes: list[str] = []
    plan = planned(spec, notes)
    assert (plan.train_rows, plan.train_examples) == (36, kept)
    # KTO reads each pair as two rows.
    total, what = (72, "training rows") if objective == "kto" else (36, "training pairs")
    said = re.search(rf"{total - kept} of {total} {what} .* raise max_length to at least (\d+) to keep them all", notes[0])
    assert said, notes
    # The max_length it asks for does keep them all.
    enough = planned(replace(spec, hyperparameters=replace(spec.hyperparameters, max_length=int(said.group(1)))))
    assert enough.train_examples == total

    result = train(spec)
    summary = result.summary
    assert (plan.train_rows, plan.train_examples, plan.steps) == (
        summary.train_rows, summary.train_examples, summary.global_step
    )
    for when in ("base", "tuned"):
        figures = result.metrics[when]["main"]
        assert math.isfinite(figures["loss"]), figures  # no pair without an answer token reaches the objective
        assert figures["pairs_scored"] == 4, figures


def test_a_held_out_set_of_only_long_prompts_is_refused_at_plan_time(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(
        tmp_path, tiny_lm, "preference", "lora", preference_pairs(16), validation_rows=long_prompt_pairs(4),
        max_length=MAX_LENGTH,
    )
    with pytest.raises(SpecError) as refused:
        planned(spec)
    message = refused.value.messages[0]
    assert "4 of 4 held-out pairs" in message and "'main'" in message, message
    assert f"prompt of at least max_length ({MAX_LENGTH}) tokens" in message, message
    assert f"raise max_length to at least {LONG_PROMPT_TOKENS + 1} or shorten the prompts" in message, message


def test_a_training_set_of_only_long_prompts_is_refused_at_plan_time(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(
        tmp_path, tiny_lm, "preference", "lora", long_prompt_pairs(16), validation_rows=preference_pairs(4),
        max_length=MAX_LENGTH,
    )
    with pytest.raises(SpecError, match=r"16 of 16 training pairs .* raise max_length to at least 44"):
        planned(spec)


def test_a_run_whose_held_out_pairs_all_fill_max_length_reports_no_loss_instead_of_crashing(
    tmp_path: Path, tiny_lm: Path
) -> None:
    spec = make_spec(
        tmp_path, tiny_lm, "preference", "lora", preference_pairs(8), validation_rows=long_prompt_pairs(4),
        epochs=1, max_length=MAX_LENGTH,
    )
    result = train(spec)
    for when in ("base", "tuned"):
        assert result.metrics[when]["main"] == {"pairs_scored": 0}


def test_reward_accuracy_is_taken_over_the_pairs_that_keep_an_answer_token(tiny_lm: Path) -> None:
    # The base model gives a one-word answer more probability than the same word and seven more: on every pair it
    # can score, it prefers the chosen answer.
    short = [
        {"prompt": pair["prompt"], "chosen": "cat", "rejected": "cat " + "dog " * 7}
        for pair in preference_pairs(6)
    ]
    long = [{**pair, "chosen": "cat", "rejected": "cat " + "dog " * 7} for pair in long_prompt_pairs(3)]
    sample = Dataset.from_list(short + long)

    class FixedLoss:
        eval_dataset = {"d0": sample}

        def evaluate(self, eval_dataset: str, metric_key_prefix: str) -> dict[str, float]:
            return {"eval_loss": 0.5}

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    metrics = preference_metrics(FixedLoss(), "d0", sample, model, tokenizer, MAX_LENGTH, 4, length_normalised=False)  # type: ignore[arg-type]
    assert metrics["pairs_scored"] == 6
    assert metrics["reward_accuracy"] == 1.0, metrics
    # The margin is a mean over the scored pairs: each is negative log-probability the rejected tail adds.
    scored_only = preference_metrics(
        FixedLoss(), "d0", Dataset.from_list(short), model, tokenizer, MAX_LENGTH, 4, length_normalised=False  # type: ignore[arg-type]
    )
    assert metrics["reward_margin"] == scored_only["reward_margin"] > 0
