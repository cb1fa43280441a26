"""Prompt-tuning adapters: registered with their own few parameters, served over the base, never merged."""

from __future__ import annotations

import pytest

from jobs.merging import merge_adapter
from jobs.services import start_merge
from tests.catalog.conftest import make_prompt_tuning_adapter
from webapp.catalog import deployment, registering
from webapp.lib.errors import LayercakeError
from webapp.playground import services as playground
from webapp.playground.resident import ResidentModels

pytestmark = pytest.mark.django_db


@pytest.fixture
def soft_prompt(causal_base, tiny_causal_lm_dir, tmp_path, alice):  # type: ignore[no-untyped-def]
    folder = make_prompt_tuning_adapter(tiny_causal_lm_dir, tmp_path / "soft-prompt")
    return registering.register_derived_model(folder, name="soft", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")


def test_soft_prompt_counts_only_its_virtual_token_embeddings(soft_prompt):
    assert soft_prompt.parameter_count == 4 * 64
    assert soft_prompt.architecture.startswith("PROMPT_TUNING") and not soft_prompt.can_merge


def test_merging_a_soft_prompt_is_refused_with_the_reason(soft_prompt, alice):
    with pytest.raises(LayercakeError, match="soft prompt is an input, not a weight"):
        merge_adapter(soft_prompt, alice)
    with pytest.raises(LayercakeError, match="not a mergeable adapter"):
        start_merge(soft_prompt, alice)


def test_soft_prompt_answers_in_the_playground_next_to_its_base(soft_prompt, causal_base, alice, monkeypatch):
    monkeypatch.setattr(playground, "send_run", lambda run: None)
    run = playground.start_run(alice, "hello there", [causal_base, soft_prompt])
    playground.serve_run(run, ResidentModels())
    run.refresh_from_db()
    assert [a["status"] for a in run.answers] == ["done", "done"], run.answers
    assert "adapter applied at inference" in run.answers[1]["mode"]


@pytest.mark.slow
def test_soft_prompt_deployment_table_has_only_the_shared_base_way(soft_prompt):
    state = deployment.profile_deployment(soft_prompt)
    assert state["status"] == "done", state
    applicable = {row["mode"]: row["applicable"] for row in state["modes"]}
    assert applicable == {"full_model": False, "merged_at_load": False, "adapter_at_inference": True}
