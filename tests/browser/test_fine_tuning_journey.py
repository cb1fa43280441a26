"""In Chromium, with a real worker: upload a dataset, run the wizard, watch the job finish, download the result."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.jobs.conftest import INSTRUCTIONS, jsonl
from webapp.catalog.services import import_base_model

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_upload_wizard_progress_result_download(page_alice, start_worker, tiny_causal_lm_dir):
    import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")
    start_worker()
    page = page_alice
    page.goto("/datasets/")
    page.set_input_files("input[name=file]", files=[{"name": "sums.jsonl", "mimeType": "application/jsonl", "buffer": jsonl(INSTRUCTIONS)}])
    page.fill("input[name=name]", "Sums")
    page.click("#upload-button")
    page.wait_for_url("**/datasets/*-*/")
    page.wait_for_selector("#dataset-status:has-text('Ready')", timeout=60_000)

    page.goto("/jobs/new/?task=sft")
    page.check("input[name=datasets] >> nth=0")
    page.check("input[name=method][value=lora]")
    page.select_option("select[name=preset]", "quick")
    page.click("details.advanced summary")
    page.fill("input[name=epochs]", "2")
    page.click("button[value=review]")
    assert "Trainable parameters" in page.content()
    page.click("#start-training")
    page.wait_for_url("**/jobs/*-*/")

    # The page polls by itself (htmx): the bar reaches 100% and the status reads Succeeded.
    page.wait_for_selector("#job-progress[data-status=succeeded]", timeout=180_000)
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
