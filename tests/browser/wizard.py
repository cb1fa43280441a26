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
