"""Catalog work for workers: thin wrappers over webapp.catalog.importing and webapp.catalog.deployment."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth import get_user_model

from webapp.catalog import deployment, importing
from webapp.catalog.models import CatalogModel


@shared_task
def import_base_model(source: str, owner_id: int | None = None, name: str = "") -> str:
    owner = get_user_model().objects.get(pk=owner_id) if owner_id is not None else None
    return str(importing.import_base_model(source, name=name, owner=owner).id)


@shared_task
def profile_deployment(model_id: str) -> str:
    model = CatalogModel.objects.get(pk=model_id)
    return str(deployment.profile_deployment(model).get("status"))
