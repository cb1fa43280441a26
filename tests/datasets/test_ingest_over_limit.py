"""Issue 13: the profile says what training does with rows past the maximum length, per task (jobs/training)."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import ingest_and_check

pytestmark = pytest.mark.django_db

LONG = " ".join(f"word{i}" for i in range(60))


@pytest.fixture
def tiny_llama(tiny_causal_lm_dir):  # type: ignore[no-untyped-def]
    from webapp.catalog import importing

    return importing.import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")


def over_limit_sentence(client, dataset) -> str:  # type: ignore[no-untyped-def]
    page = client.get(f"/datasets/{dataset.id}/").content.decode()
    start = page.index('id="truncated-share"')
    return page[start : page.index("</p>", start)]


def test_long_raw_text_is_said_to_be_split_into_chunks_not_truncated(client_alice, alice, tiny_llama):
    dataset = ingest_and_check(alice, "corpus.txt", f"{LONG}\n\nshort one\n", profile_model=tiny_llama, max_length=16)
    assert dataset.profile["tokens"]["truncated_share"] == 0.5
    sentence = over_limit_sentence(client_alice, dataset)
    assert "split into chunks of that length in training, so no text is lost" in sentence
    assert "would be truncated" not in sentence


def test_long_classification_rows_are_said_to_be_truncated(client_alice, alice, tiny_llama):
    rows = "text,label\n" + f"{LONG},a\nshort,b\n"
    dataset = ingest_and_check(alice, "labels.csv", rows, profile_model=tiny_llama, max_length=16)
    assert "would be truncated: the model only sees their beginning" in over_limit_sentence(client_alice, dataset)
