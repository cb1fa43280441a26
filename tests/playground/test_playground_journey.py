"""In Chromium: from an adapter's page to the playground, the base and the adapter answer side by side."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_try_an_adapter_next_to_its_base_and_see_which_mode_served_it(page_alice, alices_causal_adapter, causal_base, start_worker):
    start_worker(queues="inference")
    page = page_alice
    page.goto(f"/models/{alices_causal_adapter.id}/")
    page.click("text=Try it in the playground")
    page.fill("textarea[name=prompt]", "What is the capital of France?")
    page.click("button:has-text('Run')")
    page.wait_for_selector("#answers[data-status=done]", timeout=90_000)
    tuned = page.locator(f"article.answer[data-model='{alices_causal_adapter.name}']")
    base = page.locator(f"article.answer[data-model='{causal_base.name}']")
    # A random tiny model may answer only whitespace: what must hold is that both answered, each its own way.
    assert tuned.get_attribute("data-status") == base.get_attribute("data-status") == "done"
    assert tuned.locator(".generated").text_content() != base.locator(".generated").text_content()
    assert "adapter applied at inference" in tuned.locator(".served").inner_text()
    assert "base model" in base.locator(".served").inner_text()
