"""Issue 13: a delimited file is never silently changed by its quotes: one record per line, odd rows reported."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from webapp.datasets.models import Status
from webapp.datasets.services import local_normalized_files

pytestmark = pytest.mark.django_db

# Like the SMS Spam Collection: label<TAB>text, no quoting, messages that start with an unbalanced quote.
SMS = [
    ("ham", "Go until jurong point, crazy.. Available only in bugis"),
    ("ham", '"Hello there, how are you'),
    ("spam", "WINNER!! You have been selected to receive a prize"),
    ("ham", 'Ok lar... Joking wif u oni "'),
    ("ham", '"Sorry" I will call later'),
    ("spam", "Free entry in 2 a wkly comp to win FA Cup final"),
    ("ham", "U dun say so early hor... U c already then say..."),
    ("ham", '""Nah I don\'t think he goes to usf'),
]


def tsv(rows, header=True):  # type: ignore[no-untyped-def]
    head = "Label\tSMS\n" if header else ""
    return head + "".join(f"{label}\t{text}\n" for label, text in rows)


def train_rows(dataset):  # type: ignore[no-untyped-def]
    return pq.read_table(local_normalized_files(dataset)["train"]).to_pylist()


def test_stray_quotes_in_a_tsv_keep_every_row_and_its_text(check):
    dataset = check("SMSSpamCollection.tsv", tsv(SMS), mapping={"text": "SMS"})
    assert dataset.status == Status.READY, dataset.failure_reason
    assert (dataset.shape, dataset.rows) == ("classification", len(SMS))
    assert [(row["label"], row["text"]) for row in train_rows(dataset)] == SMS
    assert not any("\nham\t" in text for _, text in SMS)


def test_rows_with_suspicious_quoting_are_reported_by_number(check):
    dataset = check("sms.tsv", tsv(SMS), mapping={"text": "SMS"})
    warned = {warning["row"]: warning["message"] for warning in dataset.detected["warnings"]}
    assert sorted(warned) == [2, 5, 8]
    assert "never closes" in warned[2] and "read as written" in warned[5]
    assert dataset.detected["warning_count"] == 3
    assert any("rows 2, 5, 8" in warning for warning in dataset.profile["warnings"])


def test_the_dataset_page_lists_the_rows_read_as_written(client_alice, alice):
    from tests.datasets.conftest import ingest_and_check

    dataset = ingest_and_check(alice, "sms.tsv", tsv(SMS), mapping={"text": "SMS"})
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert 'id="reading-warnings"' in page and "3 rows with odd quoting were read as written" in page
    assert "TSV (tab-separated), with a header row" in page


def test_a_quoted_field_that_really_spans_lines_stays_one_row(check):
    text = 'text,label\n"first line\nsecond line, with a comma",pos\nplain,neg\n"said ""hi""",pos\n'
    dataset = check("multiline.csv", text)
    assert dataset.status == Status.READY, dataset.failure_reason
    assert [row["text"] for row in train_rows(dataset)] == ["first line\nsecond line, with a comma", "plain", 'said "hi"']
    assert dataset.detected["warnings"] == []


def test_a_multiline_cell_in_the_last_column_is_joined_not_split(check):
    dataset = check("last.csv", 'label,text\npos,"line one\nline two"\nneg,b\n')
    assert [row["text"] for row in train_rows(dataset)] == ["line one\nline two", "b"]


def test_a_quote_inside_an_unquoted_csv_field_is_kept(check):
    dataset = check("inches.csv", 'text,label\nhe is 5\'11" tall,a\n"quoted, with comma",b\nplain,a\n')
    assert dataset.status == Status.READY, dataset.failure_reason
    assert [row["text"] for row in train_rows(dataset)] == ['he is 5\'11" tall', "quoted, with comma", "plain"]
    assert dataset.detected["warnings"] == []
