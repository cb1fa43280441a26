"""A preference job end to end on the tiny causal LM: planned, trained, registered, measured before and after,
and tried in the playground on the prompts its run held out."""

from __future__ import annotations

import pytest

from jobs import runner, services
from jobs.held_out import held_out_prompts
from tests.jobs.conftest import ready_dataset

pytestmark = pytest.mark.django_db

WORDS = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book", "green", "apple"]
PAIRS = [
    {"prompt": f"Say {word} twice.", "chosen": f"{word} {word}", "rejected": "I will not."}
    for word in WORDS * 4
]


def test_preference_job_is_planned_trained_and_registered_with_pair_accuracy(client_alice, alice, tiny_lm):
    pairs = ready_dataset(alice, PAIRS, "pairs")
    assert (pairs.shape, pairs.task) == ("preference", "preference")
    assert "preference" in tiny_lm.tasks  # computed from its architecture: no migration for a new task
    plan = services.plan_job(
        alice, tiny_lm.id, [pairs.id], "lora", None,
        {"preset": "quick", "objective": "dpo", "learning_rate": 5e-3, "beta": 0.5, "max_steps": 8, "batch_size": 4},
    )
    assert plan.task == "preference"
    assert plan.estimate["train_rows"] == plan.estimate["train_examples"]  # one example a pair
    job = services.create_job(plan, send=False)
    assert job.start("worker-test")
    runner.execute(job)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    base, tuned = job.metrics["base"]["pairs"], job.metrics["tuned"]["pairs"]
    assert tuned["reward_margin"] > base["reward_margin"]
    model = job.result_model
    assert model.kind == "adapter" and model.parent_id == tiny_lm.id and model.tasks == ["preference"]
    assert model.can_merge

    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "Pair accuracy (prefers chosen)" in page

    prompts = held_out_prompts(model)
    validation = {row["prompt"] for row in PAIRS} & set(prompts)
    assert prompts and validation == set(prompts)
    playground = client_alice.get(f"/playground/?model={model.id}").content.decode()
    assert "Held out from training" in playground and prompts[0] in playground
