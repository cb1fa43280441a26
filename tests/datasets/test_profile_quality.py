"""Profile polish: histogram bins that fit the data, optional columns not missing, template placeholders flagged."""

from __future__ import annotations

import numpy as np
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.presenting import histogram_bars
from webapp.datasets.profiling import _histogram

pytestmark = pytest.mark.django_db


def test_short_rows_against_a_long_maximum_spread_over_many_bars():
    histogram = _histogram(np.array([30, 35, 40, 41, 50, 60, 70]), upper=1024)
    assert histogram["bins"][0] == 30 and histogram["bins"][-1] <= 80
    assert len(histogram["counts"]) >= 5 and max(histogram["counts"]) <= 2
    assert histogram["overflow"] == 0


def test_one_very_long_row_goes_to_an_open_ended_bar_not_into_the_scale():
    values = np.array([*range(20, 60), 5000])
    histogram = _histogram(values, upper=1024)
    assert histogram["bins"][:3] == [20, 22, 24]
    assert histogram["overflow"] == 1
    bars = histogram_bars(histogram, limit=1024)
    assert (bars[-1].label, bars[-1].count, bars[-1].over) == ("≥ 1025", 1, True)


def test_an_edge_falls_right_after_the_maximum_length_so_bars_are_kept_or_truncated():
    values = np.arange(100, 900, 7)
    histogram = _histogram(values, upper=512)
    assert 513 in histogram["bins"]
    bars = histogram_bars(histogram, limit=512)
    kept = sum(bar.count for bar in bars if not bar.over)
    assert kept == int((values <= 512).sum())


def test_bins_count_every_row(check):
    rows = [{"text": "word " * (n % 37 + 1)} for n in range(200)]
    histogram = check("spread.jsonl", jsonl(rows)).profile["char_lengths"]["histogram"]
    assert sum(histogram["counts"]) + histogram["overflow"] == 200
    assert max(histogram["counts"]) < 100


def test_an_empty_optional_column_is_not_reported_missing(check):
    dataset = check("instr.jsonl", jsonl([{"instruction": "a", "output": "b"}, {"instruction": "c", "input": "", "output": "d"}]))
    assert "input" not in dataset.profile["missing"]
    assert dataset.profile["optional_empty"] == {"input": 2}
    assert dataset.profile["missing"] == {"instruction": 0, "output": 0}


def test_page_does_not_list_the_optional_column_as_missing(client_alice, check):
    dataset = check("instr.jsonl", jsonl([{"instruction": "a", "output": "b"}]))
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    missing_table = page.split("Missing or empty values", 1)[1].split("</table>", 1)[0]
    assert "<code>input</code>" not in missing_table
    assert "<code>input</code> empty in 1 row" in page.split('id="optional-empty"', 1)[1]


def test_unfilled_placeholders_are_flagged_with_their_rows(check):
    rows = [
        {"instruction": "Write to {{name}} about the order", "output": "Dear {{ name }}, ..."},
        {"instruction": "Say hi", "output": "hi"},
        {"instruction": "Answer: {question}", "output": "42"},
        {"instruction": "Code: print(f'{x}') and {'a': 1}", "output": "ok"},
    ]
    profile = check("templated.jsonl", jsonl(rows)).profile
    assert profile["placeholders"]["rows"] == 2
    assert profile["placeholders"]["first_rows"] == [1, 3]
    assert set(profile["placeholders"]["found"]) == {"{{name}}", "{question}"}
    assert any("placeholders" in warning and "rows 1, 3" in warning for warning in profile["warnings"])


def test_a_placeholder_naming_a_column_of_the_file_is_flagged(check):
    rows = [{"prompt_text": "Tell me about {topic_name}", "topic_name": "cats", "text": "x {topic_name}", "label": "a"}, {"text": "y", "label": "b"}]
    profile = check("cols.jsonl", jsonl(rows)).profile
    assert profile["placeholders"]["first_rows"] == [1]


def test_page_shows_the_placeholder_rows(client_alice, check):
    dataset = check("templated.jsonl", jsonl([{"text": "Hello {{user_name}}", "label": "a"}, {"text": "b", "label": "c"}]))
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert 'id="placeholders"' in page and "{{user_name}}" in page
