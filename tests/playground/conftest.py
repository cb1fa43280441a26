from __future__ import annotations

from pathlib import Path

import pytest

from tests.catalog.conftest import (  # noqa: F401 - shared fixtures: tiny bases and adapters made with plain peft
    alices_causal_adapter,
    alices_classifier_adapter,
    causal_adapter_dir,
    causal_base,
    classifier_adapter_dir,
    encoder_base,
    make_lora_adapter,
)
from webapp.playground.models import PlaygroundRun
from webapp.playground.resident import ResidentModels


@pytest.fixture(scope="session")
def second_causal_adapter_dir(tiny_causal_lm_dir, tmp_path_factory) -> Path:
    return make_lora_adapter(tiny_causal_lm_dir, tmp_path_factory.mktemp("causal-adapter-2"), task="sft", seed=7)


@pytest.fixture(scope="session")
def tagger_adapter_dir(tiny_encoder_dir, tmp_path_factory) -> Path:
    return make_lora_adapter(
        tiny_encoder_dir, tmp_path_factory.mktemp("tagger-adapter"), task="token_classification", seed=3,
        labels=["O", "B-PER", "B-LOC", "B-ORG"],
    )


@pytest.fixture
def no_broker(monkeypatch):  # type: ignore[no-untyped-def]
    """Runs are served in the test's own process (`serve`), not sent to an inference worker."""
    from webapp.playground import services

    monkeypatch.setattr(services, "send_run", lambda run: None)


def serve(run: PlaygroundRun, pool: ResidentModels | None = None) -> PlaygroundRun:
    """Answer `run` here, as the inference worker would, and return it reloaded."""
    from webapp.playground import services

    services.serve_run(run, pool or ResidentModels())
    run.refresh_from_db()
    return run
