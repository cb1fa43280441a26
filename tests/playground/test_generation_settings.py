"""Generation settings (max new tokens, temperature, top-p): greedy by default, bounded, checked; truncation and
an untrained base head are said next to the answer."""

from __future__ import annotations

import pytest

from tests.playground.conftest import serve
from webapp.playground import services
from webapp.playground.answering import GenerationSettings
from webapp.playground.models import PlaygroundRun
from webapp.playground.resident import ResidentModels

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def test_defaults_are_greedy_and_shown_on_the_form(client_alice, causal_base):
    assert GenerationSettings() == GenerationSettings(max_new_tokens=96, temperature=0.0, top_p=1.0)
    page = client_alice.get("/playground/").content.decode()
    assert 'name="max_new_tokens" value="96"' in page and 'name="temperature" value="0.0"' in page
    assert 'name="top_p" value="1.0"' in page and "greedy" in page


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("max_new_tokens", "0", "Max new tokens must be from 1 to 512"),
    ("max_new_tokens", "2.5", "must be a whole number"),
    ("max_new_tokens", "1000", "from 1 to 512"),
    ("temperature", "5", "Temperature must be from 0.0 to 2.0"),
    ("temperature", "hot", "must be a number"),
    ("top_p", "0", "Top-p must be from 0.01 to 1.0"),
])
def test_out_of_bounds_settings_are_a_400_with_the_reason_and_no_run(client_alice, causal_base, field, value, reason):
    response = client_alice.post("/playground/runs/", {"prompt": "Hi", "models": [str(causal_base.id)], field: value})
    page = response.content.decode()
    assert response.status_code == 400 and reason in page
    assert f'name="{field}" value="{value}"' in page  # the form comes back as typed
    assert not PlaygroundRun.objects.exists()


def test_settings_are_kept_with_the_run_and_shown_on_its_page(client_alice, causal_base):
    response = client_alice.post("/playground/runs/", {
        "prompt": "Hi", "models": [str(causal_base.id)], "max_new_tokens": "12", "temperature": "0.7", "top_p": "0.9",
    })
    run = PlaygroundRun.objects.get()
    assert run.generation == {"max_new_tokens": 12, "temperature": 0.7, "top_p": 0.9}
    page = client_alice.get(response["Location"]).content.decode()
    assert 'name="max_new_tokens" value="12"' in page and "temperature 0.7, top-p 0.9" in page


def test_an_answer_cut_by_the_limit_is_marked_truncated(alice, client_alice, causal_base, alices_causal_adapter):
    run = serve(services.start_run(alice, "Tell me a long story", [causal_base, alices_causal_adapter], {"max_new_tokens": 3}))
    for answer in run.answers:
        assert answer["status"] == "done", answer
        assert answer["tokens_generated"] <= 3
    truncated = [answer for answer in run.answers if answer["truncated"]]
    assert truncated, run.answers  # a random tiny model does not stop by itself within 3 tokens
    assert all(answer["tokens_generated"] == 3 and answer["max_new_tokens"] == 3 for answer in truncated)
    page = client_alice.get(f"/playground/runs/{run.id}/answers/").content.decode()
    assert page.count('class="truncated"') == len(truncated) and "Truncated at 3 new tokens" in page


def test_sampling_with_the_same_settings_gives_the_same_answer(alice, causal_base):
    settings = {"max_new_tokens": 8, "temperature": 1.5, "top_p": 0.95}
    pool = ResidentModels()
    first = serve(services.start_run(alice, "Say something", [causal_base], settings), pool).answers[0]
    second = serve(services.start_run(alice, "Say something", [causal_base], settings), pool).answers[0]
    greedy = serve(services.start_run(alice, "Say something", [causal_base], {"max_new_tokens": 8}), pool).answers[0]
    assert first["text"] == second["text"]
    assert first["text"] != greedy["text"]


def test_a_bare_base_next_to_its_classifier_is_marked_as_having_an_untrained_head(alice, client_alice, encoder_base, alices_classifier_adapter):
    run = serve(services.start_run(alice, "I really enjoyed this film", [encoder_base, alices_classifier_adapter]))
    base_answer, tuned_answer = run.answers
    assert base_answer["untrained_head"] is True and tuned_answer["untrained_head"] is False
    page = client_alice.get(f"/playground/runs/{run.id}/answers/").content.decode()
    base_card = page[page.index(f'data-model="{encoder_base.name}"'):page.index(f'data-model="{alices_classifier_adapter.name}"')]
    assert "No trained head" in base_card and page.count("No trained head") == 1
