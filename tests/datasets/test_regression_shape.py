"""Text regression data: `text` + `score` is its own shape, normalized with float scores and profiled by their spread."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status
from webapp.datasets.services import local_normalized_files
from webapp.datasets.shapes import ShapeMismatch, detect_shape

pytestmark = pytest.mark.django_db

RATINGS = [{"text": f"review number {i}", "score": 1.0 + (i % 5)} for i in range(20)]


def test_text_and_score_are_regression_data_not_raw_text():
    shape = detect_shape(["Text", "Score"])
    assert (shape.name, shape.task, shape.column_of) == ("regression", "regression", {"text": "Text", "score": "Score"})


def test_score_is_not_the_target_of_seq2seq_and_label_still_means_classification():
    assert detect_shape(["source", "target"]).name == "seq2seq"
    assert detect_shape(["text", "target"]).name == "text"  # `target` is seq2seq's column, never a score
    # A `score` beside a `label` is most often the label's confidence: classification, unless regression is asked for.
    assert detect_shape(["text", "label", "score"]).name == "classification"
    assert detect_shape(["text", "label", "score"], declared_task="regression").name == "regression"


def test_a_regression_task_without_a_score_says_what_is_missing():
    with pytest.raises(ShapeMismatch, match="column `score` missing: a regression dataset needs text and score"):
        detect_shape(["text", "stars"], declared_task="regression")
    with pytest.raises(ShapeMismatch, match="`text` \\+ `score`"):
        detect_shape(["body", "stars"])


def test_csv_scores_become_float_scores_in_the_normalized_copy(check):
    csv = "text,score\n" + "".join(f"review {i},{value}\n" for i, value in enumerate(["4", "3.5", " 2 ", "-1e1", "+0.25"]))
    dataset = check("ratings.csv", csv)
    assert (dataset.status, dataset.shape, dataset.task, dataset.rows) == (Status.READY, "regression", "regression", 5)
    table = pq.read_table(local_normalized_files(dataset)["train"])
    assert table.schema == pa.schema([("text", pa.string()), ("score", pa.float64())])
    assert table.column("score").to_pylist() == [4.0, 3.5, 2.0, -10.0, 0.25]


def test_the_profile_gives_the_spread_of_the_scores(check):
    dataset = check("ratings.jsonl", jsonl(RATINGS))
    assert dataset.status == Status.READY, dataset.failure_reason
    assert dataset.profile["scores"] == {"min": 1.0, "max": 5.0, "mean": 3.0, "std": pytest.approx(1.414214)}
    assert not [warning for warning in dataset.profile["warnings"] if "score" in warning]


def test_scores_that_are_all_equal_are_warned_about(check):
    dataset = check("flat.jsonl", jsonl([{"text": f"row {i}", "score": 3} for i in range(8)]))
    assert dataset.status == Status.READY
    assert dataset.profile["scores"] == {"min": 3.0, "max": 3.0, "mean": 3.0, "std": 0.0}
    assert "Every score is 3" in " ".join(dataset.profile["warnings"])


def test_the_dataset_page_shows_the_spread_of_the_scores(client_alice, check):
    dataset = check("ratings.jsonl", jsonl(RATINGS))
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert 'id="score-spread"' in page and "mean 3" in page
