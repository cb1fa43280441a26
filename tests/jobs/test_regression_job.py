"""A text regression job end to end on the tiny BERT: planned, trained, registered as a regression adapter, measured
before and after, answered in the playground with a number beside the base's, and loadable from its model card."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs import services
from tests.catalog.test_model_card_usage import card_in_zip, run_the_card
from tests.jobs.conftest import ready_dataset, run_here
from tests.playground.conftest import serve
from webapp.playground import services as playground

pytestmark = pytest.mark.django_db

WORDS = ["the", "film", "was", "long", "and", "my", "friend", "saw", "it", "on", "sunday"]
# The score is how many times `good` appears among a few other words: a signal a tiny model picks up in a few epochs.
RATINGS = [
    {"text": " ".join([WORDS[(i + k) % len(WORDS)] for k in range(4)] + ["good"] * (i % 4)), "score": float(i % 4)}
    for i in range(48)
]


def test_regression_job_is_trained_registered_and_answers_with_a_number(
    client_alice, api_alice, alice, tiny_bert, monkeypatch, tmp_path: Path
):
    ratings = ready_dataset(alice, RATINGS, "ratings")
    assert (ratings.shape, ratings.task) == ("regression", "regression")
    assert "regression" in tiny_bert.tasks  # computed from its architecture: no migration for a new task
    plan = services.plan_job(
        alice, tiny_bert.id, [ratings.id], "lora", None, {"preset": "quick", "epochs": 6, "learning_rate": 5e-3, "batch_size": 4}
    )
    assert plan.task == "regression"
    job = run_here(plan)
    base, tuned = job.metrics["base"]["ratings"], job.metrics["tuned"]["ratings"]
    assert tuned["mse"] < base["mse"]
    assert {"mae", "rmse", "r2"} <= set(tuned)
    # The review's count of trainable parameters is the run's: a one-output head, not a two-label one.
    assert plan.estimate["trainable_parameters"] == job.summary["trainable_parameters"]

    model = job.result_model
    assert model.kind == "adapter" and model.parent_id == tiny_bert.id
    assert model.task == "regression" and model.tasks == ["regression"]
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "Mean squared error" in page and "R²" in page

    monkeypatch.setattr(playground, "send_run", lambda run: None)
    run = serve(playground.start_run(alice, "the film was good good good", [tiny_bert, model]))
    base_answer, tuned_answer = run.answers
    assert base_answer["status"] == tuned_answer["status"] == "done"
    assert isinstance(tuned_answer["score"], float) and isinstance(base_answer["score"], float)
    assert "switched off" in base_answer["mode"] and base_answer["untrained_head"]
    answers = client_alice.get(f"/playground/runs/{run.id}/answers/").content.decode()
    shown = re.findall(r'<p class="num predicted-score">(-?[\d.]+)</p>', answers)
    assert shown == [f"{base_answer['score']:.4f}", f"{tuned_answer['score']:.4f}"]

    card = card_in_zip(api_alice, model, tmp_path / "probe")
    assert "AutoModelForSequenceClassification" in card and "logits[0, 0]" in card
    namespace = run_the_card(api_alice, card, tmp_path / "work", monkeypatch)
    assert isinstance(namespace["score"], float)
