"""A multi-label classification job end to end on the tiny BERT: planned, trained, registered as a multi-label
adapter, measured before and after, answered in the playground label by label beside the base, and loadable from its
model card."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import services
from tests.catalog.test_model_card_usage import card_in_zip, run_the_card
from tests.jobs.conftest import ready_dataset, run_here
from tests.playground.conftest import serve
from tests.training.test_multi_label_classification import topic_rows
from webapp.playground import services as playground

pytestmark = pytest.mark.django_db


def test_multi_label_job_is_trained_registered_and_answers_label_by_label(
    client_alice, api_alice, alice, tiny_bert, monkeypatch, tmp_path: Path
):
    topics = ready_dataset(alice, topic_rows(70), "topics")
    assert (topics.shape, topics.task) == ("multi_label", "multi_label_classification")
    assert "multi_label_classification" in tiny_bert.tasks  # computed from its architecture: no migration
    plan = services.plan_job(
        alice, tiny_bert.id, [topics.id], "lora", None, {"preset": "quick", "epochs": 8, "learning_rate": 1e-2, "batch_size": 4}
    )
    assert plan.task == "multi_label_classification"
    job = run_here(plan)
    base, tuned = job.metrics["base"]["topics"], job.metrics["tuned"]["topics"]
    assert tuned["loss"] < base["loss"] and tuned["micro_f1"] > base["micro_f1"]
    assert {"macro_f1", "subset_accuracy", "majority_baseline_micro_f1"} <= set(tuned)
    # The review's count of trainable parameters is the run's: a head of one output per label (three here).
    assert plan.estimate["trainable_parameters"] == job.summary["trainable_parameters"]

    model = job.result_model
    assert model.kind == "adapter" and model.parent_id == tiny_bert.id
    assert model.task == "multi_label_classification" and model.tasks == ["multi_label_classification"]
    page = client_alice.get(f"/jobs/{job.id}/").content.decode()
    assert "Micro F1" in page and "Exact-match accuracy" in page

    monkeypatch.setattr(playground, "send_run", lambda run: None)
    run = serve(playground.start_run(alice, "my friend likes the cat and apples", [tiny_bert, model]))
    base_answer, tuned_answer = run.answers
    assert base_answer["status"] == tuned_answer["status"] == "done"
    for answer in (base_answer, tuned_answer):
        assert sorted(item["label"] for item in answer["labels"]) == ["animal", "food", "reading"]
        assert answer["predicted"] == [item["label"] for item in answer["labels"] if item["on"]]
    assert "switched off" in base_answer["mode"] and base_answer["untrained_head"]
    answers = client_alice.get(f"/playground/runs/{run.id}/answers/").content.decode()
    # The classifier's table, one per model; the labels that are on (probability >= 0.5) marked as such.
    assert answers.count("food</td>") == 2
    assert answers.count('class="label-on"') == len(base_answer["predicted"]) + len(tuned_answer["predicted"])
    assert tuned_answer["predicted"], tuned_answer  # the tuned model finds the topics of the text
    for label in tuned_answer["predicted"]:
        assert f'<td class="label">✓ {label}</td>' in answers

    card = card_in_zip(api_alice, model, tmp_path / "probe")
    assert "AutoModelForSequenceClassification" in card and "sigmoid()" in card
    namespace = run_the_card(api_alice, card, tmp_path / "work", monkeypatch)
    assert tuple(namespace["scores"].shape) == (3,)
