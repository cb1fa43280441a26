"""The maximum length is never offered nor accepted past what the profile model reads (its positions)."""

from __future__ import annotations

import pytest

from tests.conftest import api_client_for
from tests.datasets.conftest import ingest_and_check, upload
from webapp.datasets import services
from webapp.datasets.models import Dataset, Status
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db

POSITIONS = 512  # jobs.training.tiny.MAX_LENGTH: the tiny encoder reads as many tokens as MiniLM


@pytest.fixture
def encoder(tiny_encoder_dir):  # type: ignore[no-untyped-def]
    from webapp.catalog import importing

    return importing.import_base_model(str(tiny_encoder_dir), name="tiny-minilm")


def test_positions_come_from_the_models_config(encoder):
    assert services.model_positions(encoder) == POSITIONS
    assert services.model_positions(None) is None


def test_without_a_length_the_default_stays_within_the_models_positions(alice, encoder):
    dataset = ingest_and_check(alice, "t.csv", "text,label\na,x\nb,y\n", profile_model=encoder)
    assert dataset.max_length == POSITIONS
    assert dataset.profile["tokens"]["max_length"] == POSITIONS


def test_without_a_model_the_default_is_1024(alice):
    assert services.ingest(upload("a.txt", "hi\n"), alice).max_length == 1024


def test_a_length_past_the_models_positions_is_refused_and_nothing_is_stored(alice, encoder):
    with pytest.raises(LayercakeError, match="reads at most 512 tokens"):
        services.ingest(upload("t.csv", "text,label\na,x\n"), alice, profile_model=encoder, max_length=1024)
    assert not Dataset.objects.exists()


def test_api_upload_past_the_positions_is_400_naming_the_limit(alice, encoder):
    response = api_client_for(alice).post(
        "/api/v1/datasets/", {"file": upload("t.csv", "text,label\na,x\n"), "profile_model": str(encoder.id), "max_length": 1024}
    )
    assert response.status_code == 400
    assert "at most 512" in response.json()["error"]


def test_changing_the_model_brings_a_longer_length_within_its_positions(alice, encoder):
    dataset = ingest_and_check(alice, "t.csv", "text,label\na,x\nb,y\n")
    assert dataset.max_length == 1024
    services.change_settings(dataset, profile_model=encoder)
    assert dataset.max_length == POSITIONS


def test_settings_past_the_positions_are_refused_and_the_dataset_left_as_it_was(alice, encoder):
    dataset = ingest_and_check(alice, "t.csv", "text,label\na,x\nb,y\n", profile_model=encoder)
    with pytest.raises(LayercakeError, match="at most 512"):
        services.change_settings(dataset, max_length=2048)
    dataset.refresh_from_db()
    assert (dataset.status, dataset.max_length) == (Status.READY, POSITIONS)


def test_settings_page_offers_no_length_past_the_positions(client_alice, alice, encoder):
    dataset = ingest_and_check(alice, "t.csv", "text,label\na,x\nb,y\n", profile_model=encoder)
    Dataset.objects.filter(pk=dataset.pk).update(max_length=1024)  # saved before lengths were bounded
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    field = page.split('name="max_length"', 1)[1].split(">", 1)[0]
    assert 'max="512"' in field and 'value="512"' in field


def test_settings_form_past_the_positions_says_why(client_alice, alice, encoder):
    dataset = ingest_and_check(alice, "t.csv", "text,label\na,x\nb,y\n", profile_model=encoder)
    response = client_alice.post(
        f"/datasets/{dataset.id}/settings/", {"max_length": 1024, "profile_model": str(encoder.id)}, follow=True
    )
    assert "reads at most 512 tokens" in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.max_length == POSITIONS


def test_upload_form_offers_no_fixed_length(client_alice):
    page = client_alice.get("/datasets/").content.decode()
    field = page.split('name="max_length"', 1)[1].split(">", 1)[0]
    assert "value=" not in field and "the model" in field
