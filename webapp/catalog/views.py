"""Catalog pages: the model tree and one model's page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from webapp.catalog.models import CatalogModel
from webapp.lib.access import owned_or_404


def model_list(request: HttpRequest) -> HttpResponse:
    models = list(CatalogModel.objects.visible_to(request.user).order_by("created_at"))
    children: dict[object, list[CatalogModel]] = {}
    for model in models:
        children.setdefault(model.parent_id, []).append(model)
    tree = [(base, children.get(base.id, [])) for base in children.get(None, [])]
    return render(request, "catalog/list.html", {"tree": tree, "count": len(models)})


def model_detail(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    children = model.children.visible_to(request.user)  # type: ignore[attr-defined]
    return render(request, "catalog/detail.html", {"model": model, "lineage": model.lineage(), "children": children})
