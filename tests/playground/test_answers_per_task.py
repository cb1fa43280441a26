"""Each task answers in its own way: streamed chat text, labels with scores, tagged tokens; side by side with the base."""

from __future__ import annotations

import pytest

from jobs.merging import merge_adapter
from tests.playground.conftest import serve
from webapp.catalog import importing, registering
from webapp.playground import services
from webapp.playground.models import PlaygroundRun, Status
from webapp.playground.resident import ResidentModels

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def test_chat_adapter_and_its_base_answer_side_by_side_with_streamed_updates(alice, causal_base, alices_causal_adapter, monkeypatch):
    saved: list[list[dict]] = []
    real_save = PlaygroundRun.save_answers

    def recording_save(run):  # type: ignore[no-untyped-def]
        saved.append([dict(a) for a in run.answers])
        real_save(run)

    monkeypatch.setattr(PlaygroundRun, "save_answers", recording_save)
    monkeypatch.setattr("webapp.playground.answering.UPDATE_EVERY_SECONDS", 0.0)
    run = serve(services.start_run(alice, "What is the capital of France?", [causal_base, alices_causal_adapter]))
    assert run.status == Status.DONE
    base_answer, tuned_answer = run.answers
    assert base_answer["status"] == tuned_answer["status"] == "done"
    assert base_answer["text"] and tuned_answer["text"] and base_answer["text"] != tuned_answer["text"]
    assert tuned_answer["mode"].startswith("adapter applied at inference over") and tuned_answer["seconds"] > 0
    assert base_answer["tokens_generated"] > 0 and base_answer["ms_per_token"] > 0
    partial_texts = [s[1].get("text") for s in saved if s[1].get("status") == "running" and s[1].get("text")]
    assert len(partial_texts) >= 2 and all(tuned_answer["text"].startswith(t) for t in partial_texts), "tokens were streamed"


def test_classifier_answers_labels_with_scores_and_the_base_through_it(alice, encoder_base, alices_classifier_adapter):
    run = serve(services.start_run(alice, "I really enjoyed this film", [encoder_base, alices_classifier_adapter]))
    base_answer, tuned_answer = run.answers
    assert [label["label"] for label in tuned_answer["labels"]] in (["negative", "positive"], ["positive", "negative"])
    assert abs(sum(label["score"] for label in tuned_answer["labels"]) - 1) < 1e-3
    assert "switched off" in base_answer["mode"] and base_answer["labels"] != tuned_answer["labels"]


def test_token_classifier_tags_the_words_of_the_input(alice, encoder_base, tagger_adapter_dir):
    tagger = registering.register_derived_model(
        tagger_adapter_dir, name="ner", kind="adapter", parent=encoder_base, owner=alice, metrics={}, task="token_classification",
    )
    text = "John lives in New York"
    run = serve(services.start_run(alice, text, [tagger]))
    tokens = run.answers[0]["tokens"]
    assert tokens and {t["tag"] for t in tokens} <= {"O", "B-PER", "B-LOC", "B-ORG"}
    assert all(text[t["start"]:t["end"]] == t["text"] for t in tokens)


def test_merged_model_answers_as_a_full_model_like_its_adapter(alice, alices_causal_adapter):
    merged = merge_adapter(alices_causal_adapter, alice)
    run = serve(services.start_run(alice, "List three colors.", [alices_causal_adapter, merged]))
    adapter_answer, merged_answer = run.answers
    assert merged_answer["mode"].startswith("merged model of its own")
    assert merged_answer["text"] == adapter_answer["text"]


def test_a_bare_encoder_alone_is_answered_with_the_reason(alice, encoder_base):
    run = serve(services.start_run(alice, "hello", [encoder_base]))
    assert run.answers[0]["status"] == "failed" and "no task head" in run.answers[0]["error"]
    assert run.status == Status.DONE


def test_a_second_delivery_of_the_same_run_does_nothing(alice, causal_base):
    run = serve(services.start_run(alice, "hi", [causal_base]))
    answers = run.answers
    pool = ResidentModels()
    services.serve_run(run, pool)
    run.refresh_from_db()
    assert run.answers == answers and pool.loads == 0


def test_an_empty_input_or_no_model_is_refused(alice, causal_base):
    with pytest.raises(services.LayercakeError, match="Type an input"):
        services.start_run(alice, "  ", [causal_base])
    with pytest.raises(services.LayercakeError, match="at least one model"):
        services.start_run(alice, "hi", [])


def test_seq2seq_base_answers_with_generated_text(alice, tiny_seq2seq_dir):
    t5 = importing.import_base_model(str(tiny_seq2seq_dir), name="tiny-t5")
    run = serve(services.start_run(alice, "translate: the cat likes the book", [t5]))
    answer = run.answers[0]
    assert answer["status"] == "done", answer
    assert answer["task"] == "seq2seq" and answer["mode"].startswith("base model") and "text" in answer
