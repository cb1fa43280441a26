"""In Chromium: log in and find both bundled models in the catalog with their parameter counts."""

from __future__ import annotations

import pytest

from tests.conftest import log_in
from webapp.catalog import services

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_login_then_catalog_lists_both_bundled_models(page, alice):
    services.import_bundled_models()
    log_in(page, "alice")
    page.goto("/models/")
    smol = page.locator("tr.model-row[data-model='SmolLM2-135M-Instruct']")
    minilm = page.locator("tr.model-row[data-model='all-MiniLM-L6-v2']")
    assert smol.locator(".parameters").inner_text() == "134.5M"
    assert minilm.locator(".parameters").inner_text() == "22.7M"
    smol.locator("a").first.click()
    page.wait_for_url("**/models/*/")
    assert "LlamaForCausalLM" in page.content()


def test_anonymous_visitor_is_sent_to_login(page):
    page.goto("/models/")
    assert "/login/" in page.url
    assert page.locator("h1").inner_text() == "Log in"
