"""Steps through the job wizard that several journeys share."""

from __future__ import annotations

from typing import Any


def open_quick_lora_review(page: Any) -> None:
    """The SFT wizard with the first dataset, LoRA and the quick preset, up to its review page."""
    page.goto("/jobs/new/?task=sft")
    page.check("input[name=datasets] >> nth=0")
    page.check("input[name=method][value=lora]")
    page.select_option("select[name=preset]", "quick")
    page.click("button[value=review]")


def upload_ready_dataset(page: Any, filename: str, name: str, body: bytes) -> None:
    """Upload a JSONL file on the datasets page and wait until its checks make it ready."""
    page.goto("/datasets/")
    page.set_input_files("input[name=file]", files=[{"name": filename, "mimeType": "application/jsonl", "buffer": body}])
    page.fill("input[name=name]", name)
    page.click("#upload-button")
    page.wait_for_url("**/datasets/*-*/")
    # The check queue's worker starts with the test: on a loaded machine that alone can take a minute.
    page.wait_for_selector("#dataset-status:has-text('Ready')", timeout=150_000)


def review_start_and_finish(page: Any) -> None:
    """From a filled wizard: the review page, then start, then wait on the job page until it succeeds."""
    page.click("button[value=review]")
    assert "Trainable parameters" in page.content()
    page.click("#start-training")
    page.wait_for_url("**/jobs/*-*/")
    # The page polls by itself (htmx): the bar reaches 100% and the status reads Succeeded.
    page.wait_for_selector("#job-progress[data-status=succeeded]", timeout=180_000)
