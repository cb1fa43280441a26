"""In Chromium, with a real worker: upload preference pairs, pick preference tuning in the wizard, see the pair
accuracy before and after, and try the result on the prompts its run held out."""

from __future__ import annotations

import pytest

from tests.browser.wizard import review_start_and_finish, upload_ready_dataset
from tests.jobs.conftest import jsonl
from tests.jobs.test_preference_job import PAIRS
from webapp.catalog.importing import import_base_model

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_upload_pairs_wizard_preference_job_result(page_alice, start_worker, tiny_causal_lm_dir):
    import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")
    start_worker()
    page = page_alice
    upload_ready_dataset(page, "pairs.jsonl", "Pairs", jsonl(PAIRS))
    assert "preference" in page.content()

    page.goto("/jobs/new/?task=preference")
    page.check("input[name=datasets] >> nth=0")
    page.check("input[name=method][value=lora]")
    page.select_option("select[name=preset]", "quick")
    page.click("details.advanced summary")
    page.select_option("select[name=objective]", "dpo")
    page.fill("input[name=max_steps]", "4")
    page.fill("input[name=learning_rate]", "0.005")
    review_start_and_finish(page)
    assert "Pair accuracy (prefers chosen)" in page.content()

    page.click("#result-model")
    page.wait_for_url("**/models/*-*/")
    assert "Pair accuracy (prefers chosen)" in page.content()
    page.click("text=Try it")
    page.wait_for_selector("a.held-out-prompt")
    page.click("a.held-out-prompt >> nth=0")
    assert page.input_value("#prompt").startswith("Say ")
