"""A mapping that does not fit never makes a dataset unfixable: the file's columns stay, the error names the
column and its rows, and the last settings that worked can be restored in one step."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import ingest_and_check, jsonl
from webapp.datasets import services
from webapp.datasets.models import Status

pytestmark = pytest.mark.django_db

ROWS = [
    {"question": "q1", "answer": "a1", "keywords": ["x", "y"]},
    {"question": "q2", "answer": "a2", "keywords": ["z"]},
    {"question": "q3", "answer": "a3", "keywords": None},
]
COLUMNS = ["question", "answer", "keywords"]


@pytest.fixture
def mapped(alice):  # type: ignore[no-untyped-def]
    """A dataset made ready by a good mapping."""
    dataset = ingest_and_check(alice, "qa.jsonl", jsonl(ROWS))
    services.change_settings(dataset, mapping={"instruction": "question", "output": "answer"})
    dataset = services.check_dataset(dataset)
    assert dataset.status == Status.READY
    return dataset


def remap(dataset, mapping):  # type: ignore[no-untyped-def]
    services.change_settings(dataset, mapping=mapping)
    return services.check_dataset(dataset)


def test_a_list_column_mapped_to_text_keeps_the_files_columns(mapped):
    dataset = remap(mapped, {"instruction": "keywords", "output": "answer"})
    assert dataset.status == Status.INVALID
    assert dataset.columns == COLUMNS
    assert dataset.shape == "instruction"


def test_the_error_names_the_column_and_its_rows(mapped):
    dataset = remap(mapped, {"instruction": "keywords", "output": "answer"})
    assert "`keywords`" in dataset.failure_reason and "`instruction`" in dataset.failure_reason
    assert [(error["row"], error["field"]) for error in dataset.errors] == [(1, "instruction"), (2, "instruction")]
    assert "list" in dataset.errors[0]["message"]


def test_a_failed_mapping_keeps_the_last_ready_settings(mapped):
    dataset = remap(mapped, {"instruction": "keywords", "output": "answer"})
    assert dataset.last_ready_settings["column_mapping"] == {"instruction": "question", "output": "answer"}


def test_restoring_the_last_ready_settings_makes_it_ready_again(mapped):
    dataset = remap(mapped, {"instruction": "keywords", "output": "answer"})
    services.restore_last_ready_settings(dataset)
    assert dataset.column_mapping == {"instruction": "question", "output": "answer"}
    assert services.check_dataset(dataset).status == Status.READY


def test_restoring_without_a_ready_past_is_refused(alice):
    from webapp.lib.errors import LayercakeError

    dataset = ingest_and_check(alice, "qa.jsonl", jsonl(ROWS))
    with pytest.raises(LayercakeError, match="never been ready"):
        services.restore_last_ready_settings(dataset)


def test_a_list_column_found_by_its_name_keeps_the_columns_on_first_check(alice):
    dataset = ingest_and_check(alice, "lists.jsonl", jsonl([{"instruction": ["a"], "output": "b"}]))
    assert dataset.status == Status.INVALID
    assert dataset.columns == ["instruction", "output"]
    assert dataset.errors[0]["row"] == 1


def test_page_after_a_failed_mapping_still_offers_the_mapping_and_a_restore(client_alice, mapped):
    remap(mapped, {"instruction": "keywords", "output": "answer"})
    page = client_alice.get(f"/datasets/{mapped.id}/").content.decode()
    assert "Column mapping" in page
    assert '<option value="keywords" selected>keywords</option>' in page
    assert '<option value="question">question</option>' in page
    assert f'action="/datasets/{mapped.id}/restore/"' in page
    assert "must hold text" in page


def test_restore_button_requests_a_check_with_the_last_ready_mapping(client_alice, mapped):
    remap(mapped, {"instruction": "keywords", "output": "answer"})
    response = client_alice.post(f"/datasets/{mapped.id}/restore/")
    assert response.status_code == 302
    mapped.refresh_from_db()
    assert (mapped.status, mapped.column_mapping) == (Status.UPLOADED, {"instruction": "question", "output": "answer"})


def test_restore_of_anothers_dataset_is_404(client, bob, mapped):
    client.force_login(bob)
    assert client.post(f"/datasets/{mapped.id}/restore/").status_code == 404


def test_a_whole_column_of_lists_lists_a_few_rows_and_counts_the_rest(alice):
    rows = [{"instruction": ["a", str(i)], "output": "b"} for i in range(12)]
    dataset = ingest_and_check(alice, "lists.jsonl", jsonl(rows))
    assert [error["row"] for error in dataset.errors] == [1, 2, 3, 4, 5, None]
    assert dataset.errors[-1]["message"] == "and 7 more rows of `instruction` like these"


def test_api_shows_the_last_ready_settings_and_restores_them(alice, bob, mapped):
    from tests.conftest import api_client_for

    remap(mapped, {"instruction": "keywords", "output": "answer"})
    api = api_client_for(alice)
    shown = api.get(f"/api/v1/datasets/{mapped.id}/").json()
    assert shown["columns"] == COLUMNS
    assert shown["last_ready_settings"]["column_mapping"] == {"instruction": "question", "output": "answer"}
    assert api_client_for(bob).post(f"/api/v1/datasets/{mapped.id}/restore/").status_code == 404
    response = api.post(f"/api/v1/datasets/{mapped.id}/restore/")
    assert response.status_code == 202
    assert response.json()["column_mapping"] == {"instruction": "question", "output": "answer"}


def test_a_misfit_in_the_validation_file_is_named_as_such(alice):
    from tests.datasets.conftest import upload

    train = jsonl([{"instruction": "a", "output": "b"}])
    validation = jsonl([{"instruction": ["x"], "output": "y"}])
    dataset = services.check_dataset(services.ingest(upload("t.jsonl", train), alice, validation_upload=upload("v.jsonl", validation)))
    assert dataset.failure_reason.startswith("In the validation file: Column `instruction`")
    assert dataset.errors[0]["row"] == 1 and dataset.errors[0]["message"].startswith("in the validation file:")
    assert dataset.columns == ["instruction", "output"]
