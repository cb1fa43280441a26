"""In Chromium: log in and find both bundled models in the catalog with their parameter counts; delete a model of your own."""

from __future__ import annotations

import pytest

from tests.conftest import log_in
from webapp.catalog import importing

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_login_then_catalog_lists_both_bundled_models(page, alice):
    importing.import_bundled_models()
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


def test_owner_deletes_a_model_after_confirming_and_sees_the_storage_it_freed(page_alice, alice):
    from tests.catalog.test_delete_model import stored_model
    from webapp.catalog.models import CatalogModel, Kind

    model = stored_model(alice, name="alice-old-base", kind=Kind.BASE)
    page_alice.goto(f"/models/{model.pk}/")
    page_alice.click("a.delete-model")
    page_alice.wait_for_url(f"**/models/{model.pk}/delete/")
    assert "Delete alice-old-base?" in page_alice.locator("h1").inner_text()
    page_alice.click("button.confirm-delete")
    page_alice.wait_for_url("**/models/")
    assert "Deleted alice-old-base" in page_alice.content()
    assert not CatalogModel.objects.filter(pk=model.pk).exists()
    page_alice.goto("/account/")
    assert page_alice.locator(".storage-breakdown").is_visible()
    assert "Storage used" in (page_alice.locator("[role=progressbar]").get_attribute("aria-label") or "")
