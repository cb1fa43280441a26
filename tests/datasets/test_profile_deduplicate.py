"""“Drop exact duplicates”: a new version of the dataset, checked like any upload; the original is untouched."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.conftest import api_client_for
from tests.datasets.conftest import ingest_and_check, jsonl, upload
from webapp.datasets import services
from webapp.datasets.models import Dataset, Status
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db

ROWS = [
    {"question": "q1", "answer": "a1"},
    {"question": "q2", "answer": "a2"},
    {"question": "q1", "answer": "a1"},
    {"question": "Q1", "answer": "a1"},  # near, not exact: stays
    {"question": "q2", "answer": "a2"},
]


@pytest.fixture
def with_duplicates(alice):  # type: ignore[no-untyped-def]
    dataset = ingest_and_check(alice, "qa.jsonl", jsonl(ROWS))
    services.change_settings(dataset, mapping={"instruction": "question", "output": "answer"})
    dataset = services.check_dataset(dataset)
    assert dataset.status == Status.READY and dataset.profile["duplicates"]["exact"] == 2
    return dataset


def rows_of(dataset: Dataset) -> list[dict]:
    return [row for path in services.local_normalized_files(dataset).values() for row in pq.read_table(path).to_pylist()]


def test_a_new_dataset_without_the_duplicates_is_made_and_checked(with_duplicates, alice):
    copy = services.check_dataset(services.drop_exact_duplicates(with_duplicates))
    assert copy.pk != with_duplicates.pk and copy.owner == alice
    assert copy.name == "qa.jsonl (deduplicated)"
    assert copy.derived_from == with_duplicates
    assert (copy.status, copy.shape, copy.rows) == (Status.READY, "instruction", 3)
    assert copy.profile["duplicates"]["exact"] == 0
    assert [row["instruction"] for row in rows_of(copy)] == ["q1", "q2", "Q1"]


def test_the_original_is_untouched(with_duplicates):
    before = rows_of(with_duplicates)
    services.check_dataset(services.drop_exact_duplicates(with_duplicates))
    with_duplicates.refresh_from_db()
    assert with_duplicates.status == Status.READY and with_duplicates.rows == 5
    assert rows_of(with_duplicates) == before


def test_a_validation_file_stays_apart_and_loses_rows_that_repeat_training_rows(alice):
    train = jsonl([{"text": "a", "label": "x"}, {"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    validation = jsonl([{"text": "b", "label": "y"}, {"text": "c", "label": "x"}])
    dataset = services.check_dataset(services.ingest(upload("t.jsonl", train), alice, validation_upload=upload("v.jsonl", validation)))
    copy = services.check_dataset(services.drop_exact_duplicates(dataset))
    assert copy.status == Status.READY
    assert copy.profile["splits"] == {"train": 2, "validation": 1}
    assert copy.profile["leakage"]["exact"] == 0


def test_a_dataset_without_duplicates_is_refused(check):
    dataset = check("a.txt", "one\ntwo\n")
    with pytest.raises(LayercakeError, match="no exact duplicates"):
        services.drop_exact_duplicates(dataset)
    assert Dataset.objects.count() == 1


def test_page_shows_the_count_next_to_the_button_and_the_button_opens_the_copy(client_alice, with_duplicates):
    page = client_alice.get(f"/datasets/{with_duplicates.id}/").content.decode()
    assert 'id="drop-duplicates"' in page and "Drop 2 exact duplicates" in page
    response = client_alice.post(f"/datasets/{with_duplicates.id}/deduplicate/")
    copy = Dataset.objects.get(derived_from=with_duplicates)
    assert response.status_code == 302 and response["Location"] == f"/datasets/{copy.id}/"
    assert copy.status == Status.UPLOADED


def test_page_links_the_copy_to_its_source(client_alice, with_duplicates):
    copy = services.drop_exact_duplicates(with_duplicates)
    page = client_alice.get(f"/datasets/{copy.id}/").content.decode()
    assert f'href="/datasets/{with_duplicates.id}/"' in page


def test_others_cannot_deduplicate(client, bob, with_duplicates):
    client.force_login(bob)
    assert client.post(f"/datasets/{with_duplicates.id}/deduplicate/").status_code == 404
    assert api_client_for(bob).post(f"/api/v1/datasets/{with_duplicates.id}/deduplicate/").status_code == 404
    assert Dataset.objects.count() == 1


def test_api_answers_201_with_the_new_dataset(alice, with_duplicates):
    response = api_client_for(alice).post(f"/api/v1/datasets/{with_duplicates.id}/deduplicate/")
    assert response.status_code == 201
    assert response.json()["derived_from"] == str(with_duplicates.id)
    assert response.json()["status"] == "uploaded"


def test_api_refuses_a_dataset_that_is_not_ready_with_409(alice):
    dataset = services.ingest(upload("a.txt", "x\nx\n"), alice)
    response = api_client_for(alice).post(f"/api/v1/datasets/{dataset.id}/deduplicate/")
    assert response.status_code == 409 and "ready" in response.json()["error"]
