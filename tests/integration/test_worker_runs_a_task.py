"""A real Celery worker process, over the configured broker, runs a catalog import end to end."""

from __future__ import annotations

import pytest
from django.db import transaction

from tests.catalog.conftest import build_tiny_bert
from tests.conftest import wait_for
from webapp.catalog import tasks
from webapp.catalog.models import CatalogModel

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_worker_imports_a_model_sent_through_the_broker(celery_worker, tmp_path, alice):
    folder = build_tiny_bert(tmp_path / "tiny-bert")
    transaction.on_commit(lambda: tasks.import_base_model.delay(str(folder), alice.pk, "via-worker"))
    model = wait_for(
        lambda: CatalogModel.objects.filter(name="via-worker").first(),
        timeout=90,
        message="the worker did not import the model",
    )
    assert model.owner == alice
    assert model.architecture == "BertModel"
    assert "import_base_model" in celery_worker.output()
