"""In a real browser: a column mapping that does not fit, then its fix; the mapping is never lost."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.datasets.conftest import ingest_and_check, jsonl
from tests.datasets.test_browser_upload import checker  # noqa: F401  (the stand-in worker fixture)
from webapp.datasets.models import Dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = [{"question": f"q{i}", "answer": f"a{i}", "keywords": ["k", str(i)]} for i in range(6)]


def wait_until_checked(page, dataset, status: str) -> None:  # type: ignore[no-untyped-def]
    """The page polls every 2 s by itself; reloading once the check is done keeps the journey quick."""
    wait_for(lambda: Dataset.objects.get(pk=dataset.pk).is_final, timeout=20, message="the check did not end")
    page.reload()
    page.wait_for_selector(f"#dataset-status:has-text('{status}')")


def save_and_wait(page, dataset, status: str) -> None:  # type: ignore[no-untyped-def]
    with page.expect_navigation():
        page.click("#settings-form button[type=submit]")
    wait_until_checked(page, dataset, status)


def test_a_failed_mapping_keeps_the_mapping_and_the_fix_makes_it_ready(page_alice, alice, checker):  # noqa: F811
    page = page_alice
    dataset = ingest_and_check(alice, "qa.jsonl", jsonl(ROWS))
    page.goto(f"/datasets/{dataset.id}/")
    page.wait_for_selector("#dataset-status:has-text('Invalid')")

    page.select_option("#id_map_instruction", "keywords")
    page.select_option("#id_map_output", "answer")
    save_and_wait(page, dataset, "Invalid")
    failure = page.text_content("[role=alert]")
    assert "`keywords`" in failure and "must hold text" in failure
    assert "row" in page.text_content("table.errors").lower()
    assert page.is_visible("#column-mapping")
    assert page.input_value("#id_map_instruction") == "keywords"

    page.select_option("#id_map_instruction", "question")
    save_and_wait(page, dataset, "Ready")
    assert page.input_value("#id_map_instruction") == "question"
    assert page.is_visible("#dataset-profile")

    page.select_option("#id_map_instruction", "keywords")
    save_and_wait(page, dataset, "Invalid")
    assert "question" in page.text_content("#restore-settings")
    with page.expect_navigation():
        page.click("#restore-settings button")
    wait_until_checked(page, dataset, "Ready")
    assert page.input_value("#id_map_instruction") == "question"
