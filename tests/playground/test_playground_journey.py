"""In Chromium: from an adapter's page to the playground, the base and the adapter answer side by side;
a small max-new-tokens setting marks the cut answers as truncated."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_try_an_adapter_next_to_its_base_and_see_which_mode_served_it(page_alice, alices_causal_adapter, causal_base, start_worker):
    start_worker(queues="inference")
    page = page_alice
    page.goto(f"/models/{alices_causal_adapter.id}/")
    page.click("text=Try it in the playground")
    page.fill("textarea[name=prompt]", "What is the capital of France?")
    page.click("summary:has-text('Generation settings')")
    assert page.input_value("input[name=temperature]") == "0.0"  # greedy by default: comparable side by side
    page.fill("input[name=max_new_tokens]", "3")
    page.click("button:has-text('Run')")
    page.wait_for_selector("#answers[data-status=done]", timeout=90_000)
    # A random tiny model does not stop by itself within 3 tokens: the cut is marked where the user reads.
    assert page.locator("article.answer .truncated").first.is_visible()
    assert "Truncated at 3 new tokens" in page.locator("article.answer .truncated").first.inner_text()
    tuned = page.locator(f"article.answer[data-model='{alices_causal_adapter.name}']")
    base = page.locator(f"article.answer[data-model='{causal_base.name}']")
    # A random tiny model may answer only whitespace: what must hold is that both answered, each its own way.
    assert tuned.get_attribute("data-status") == base.get_attribute("data-status") == "done"
    assert tuned.locator(".generated").text_content() != base.locator(".generated").text_content()
    assert "adapter applied at inference" in tuned.locator(".served").inner_text()
    assert "base model" in base.locator(".served").inner_text()
