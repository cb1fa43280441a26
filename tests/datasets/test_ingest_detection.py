"""Issue 13: a file is read by what it holds, not by its name; what was detected is shown and can be overridden."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl, upload
from webapp.datasets import services
from webapp.datasets.models import Dataset, Status
from webapp.datasets.services import local_normalized_files
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db

ROWS = [("ham", "Go until jurong point, crazy"), ("spam", "WINNER!! You won a prize; call now"), ("ham", "Ok lar... Joking wif u oni"),
        ("ham", "U dun say so early hor"), ("spam", "Free entry in 2 a wkly comp"), ("ham", "Nah I don't think he goes")]
HEADED = "label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in ROWS)
HEADERLESS = "".join(f"{label}\t{text}\n" for label, text in ROWS)


def pairs(dataset):  # type: ignore[no-untyped-def]
    return [(row["label"], row["text"]) for row in pq.read_table(local_normalized_files(dataset)["train"]).to_pylist()]


def test_a_tsv_named_csv_is_read_as_tsv(check):
    dataset = check("spam.csv", HEADED)
    assert (dataset.status, dataset.file_format, dataset.columns) == (Status.READY, "tsv", ["label", "text"])
    assert pairs(dataset) == ROWS
    assert dataset.detected["summary"] == "TSV (tab-separated), with a header row"
    assert "although the name ends in .csv" in dataset.detected["notes"][0]


def test_a_tsv_named_txt_is_a_table_not_documents(check):
    dataset = check("spam.txt", HEADED)
    assert (dataset.status, dataset.shape, dataset.rows) == (Status.READY, "classification", len(ROWS))
    assert pairs(dataset) == ROWS


def test_a_file_without_an_extension_is_read_by_its_content(check):
    dataset = check("SMSSpamCollection", HEADERLESS)
    assert dataset.status == Status.READY, dataset.failure_reason
    assert (dataset.file_format, dataset.detected["header"], dataset.columns) == ("tsv", False, ["label", "text"])
    assert pairs(dataset) == ROWS  # the first row is data, not a header
    assert any("by their content" in note for note in dataset.detected["notes"])


def test_semicolons_and_pipes_are_sniffed(check):
    for name, delimiter in (("semi.csv", ";"), ("pipe.data", "|")):
        text = f"text{delimiter}label\n" + "".join(f"{body.replace(';', ',')}, more{delimiter}{label}\n" for label, body in ROWS)
        dataset = check(name, text)
        assert (dataset.status, dataset.columns) == (Status.READY, ["text", "label"]), (name, dataset.failure_reason)


def test_jsonl_named_json_or_txt_is_read_as_jsonl(check):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    for name in ("data.json", "data.txt", "data"):
        dataset = check(name, jsonl(rows))
        assert (dataset.status, dataset.file_format, dataset.rows) == (Status.READY, "jsonl", 3), name


def test_plain_prose_stays_plain_text(check):
    dataset = check("notes.txt", "Once, upon a time.\nThere was a cat, a dog, and a bird.\nThe end\n")
    assert (dataset.file_format, dataset.shape, dataset.rows) == ("txt", "text", 3)


def test_binary_content_is_refused_at_upload_whatever_its_name(alice):
    with pytest.raises(LayercakeError, match="binary data"):
        services.ingest(upload("data.csv", b"\x89PNG\r\n\x1a\n\x00\x00"), alice)
    assert not Dataset.objects.exists()


def test_the_header_and_delimiter_can_be_overridden_through_the_api(api_alice):
    text = "a|b\n" + "".join(f"{label}|{body}\n" for label, body in ROWS)
    response = api_alice.post(
        "/api/v1/datasets/",
        {"file": upload("odd.csv", text), "delimiter": "pipe", "header": "false"},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert response.json()["read_choice"] == {"delimiter": "pipe", "header": False}
    dataset = services.check_dataset(Dataset.objects.get(pk=response.json()["id"]))
    body = api_alice.get(f"/api/v1/datasets/{dataset.id}/").json()
    assert body["detected"]["summary"] == "CSV (pipe-separated), no header row"
    assert body["columns"] == ["column_1", "column_2"]  # "a|b" is a row, as asked; the columns get mapped next


def test_a_bad_override_is_a_400(api_alice):
    response = api_alice.post(
        "/api/v1/datasets/", {"file": upload("x.jsonl", '{"text": "a"}\n'), "file_format": "jsonl", "delimiter": "tab"}, format="multipart"
    )
    assert response.status_code == 400 and "delimiter applies to CSV or TSV" in response.json()["error"]


def test_reading_again_with_another_choice_from_the_dataset_page(client_alice, alice):
    from tests.datasets.conftest import ingest_and_check

    dataset = ingest_and_check(alice, "spam.tsv", HEADED)
    assert dataset.rows == len(ROWS)
    response = client_alice.post(
        f"/datasets/{dataset.id}/settings/", {"header": "no", "file_format": "", "delimiter": "", "task": ""}
    )
    assert response.status_code == 302
    dataset = services.check_dataset(Dataset.objects.get(pk=dataset.pk))
    assert dataset.read_choice == {"header": False}
    assert dataset.detected["header"] is False and dataset.columns == ["column_1", "column_2"]
