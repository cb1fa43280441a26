"""In Chromium, with a real worker: upload a dataset, run the wizard, watch the job finish, download the result."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.browser.wizard import review_start_and_finish, upload_ready_dataset
from tests.jobs.conftest import INSTRUCTIONS, jsonl
from webapp.catalog.importing import import_base_model

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_upload_wizard_progress_result_download(page_alice, start_worker, tiny_causal_lm_dir):
    import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")
    start_worker()
    page = page_alice
    upload_ready_dataset(page, "sums.jsonl", "Sums", jsonl(INSTRUCTIONS))

    page.goto("/jobs/new/?task=sft")
    page.check("input[name=datasets] >> nth=0")
    page.check("input[name=method][value=lora]")
    page.select_option("select[name=preset]", "quick")
    page.click("details.advanced summary")
    page.fill("input[name=epochs]", "2")
    review_start_and_finish(page)
    assert page.get_attribute("[role=progressbar]", "aria-valuenow") == "100"
    assert page.locator("table.metrics tr").count() > 1
    page.click("#result-model")
    page.wait_for_url("**/models/*-*/")
    with page.expect_download() as download:
        page.click("text=Download (zip)")
    with zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read())) as archive:
        names = set(archive.namelist())
    assert any(name.endswith("adapter_config.json") for name in names), names
    assert any(name.endswith("adapter_model.safetensors") for name in names), names
