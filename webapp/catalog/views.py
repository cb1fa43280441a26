"""Catalog pages: the model tree, one model's page, downloads, merge, the deployment table, imports."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from webapp.catalog import downloads, services
from webapp.catalog.forms import ImportForm
from webapp.catalog.models import CatalogModel
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError


def model_list(request: HttpRequest) -> HttpResponse:
    models = list(CatalogModel.objects.visible_to(request.user).order_by("created_at"))
    return render(request, "catalog/list.html", {"rows": services.model_tree(models), "count": len(models)})


def detail_context(request: HttpRequest, model: CatalogModel) -> dict[str, Any]:
    return {
        "model": model,
        "lineage": model.lineage(),
        "children": model.children.visible_to(request.user),  # type: ignore[attr-defined]
        "can_rename": model.owner_id == request.user.pk,
        "metric_rows": services.metric_rows(model.metrics),
        "merge_proof": (model.metrics or {}).get("merge_proof"),
        "card": services.model_card_text(model, downloads.site_root(request)),
        "adapter_summary": services.adapter_summary(model),
        "origin": services.origin_of(model),
        "deployment": services.deployment_table(model),
    }


def model_detail(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    return render(request, "catalog/detail.html", detail_context(request, model))


@require_POST
def rename(request: HttpRequest, pk: str) -> HttpResponse:
    # Owner-only: a shared base is visible to everyone but is nobody's to rename.
    model = owned_or_404(CatalogModel.objects.owned_by(request.user), request.user, pk)
    try:
        services.rename_model(model, request.POST.get("name", ""))
    except LayercakeError as error:
        context = {**detail_context(request, model), "rename_error": error.message, "rename_value": request.POST.get("name", "")}
        return render(request, "catalog/detail.html", context, status=error.status)
    messages.success(request, f"Renamed to {model.name}.")
    return redirect("catalog:detail", pk=model.pk)


def download_zip(request: HttpRequest, pk: str) -> StreamingHttpResponse:
    return downloads.zip_response(owned_or_404(CatalogModel, request.user, pk), downloads.site_root(request))


def download_file(request: HttpRequest, pk: str, name: str) -> StreamingHttpResponse:
    return downloads.file_response(owned_or_404(CatalogModel, request.user, pk), name)


@require_POST
def merge(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    try:
        job = services.start_merge(model, request.user)
    except LayercakeError as error:
        messages.error(request, error.message)
        return redirect("catalog:detail", pk=model.pk)
    messages.success(request, "Merging: a job makes a full model from this adapter and proves it answers the same.")
    try:
        return redirect(reverse("jobs:detail", args=[job.pk]))
    except NoReverseMatch:
        return redirect("catalog:detail", pk=model.pk)


@require_POST
def profile(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    try:
        services.request_deployment_profile(model)
        messages.success(request, "Measuring the three ways to run it on a worker; the table fills in when done.")
    except LayercakeError as error:
        messages.error(request, error.message)
    return redirect("catalog:detail", pk=model.pk)


def deployment_partial(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    return render(request, "catalog/_deployment.html", {"model": model, "deployment": services.deployment_table(model)})


def import_model(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            model = services.import_upload(
                form.cleaned_data["file"], kind=form.cleaned_data["kind"], name=form.cleaned_data["name"],
                owner=request.user, base=form.cleaned_data.get("base"),
            )
        except LayercakeError as error:
            form.add_error("file", error.message)
            for detail in error.details:
                form.add_error(None, str(detail))
        else:
            messages.success(request, f"Imported {model.name}.")
            return redirect("catalog:detail", pk=model.pk)
    return render(request, "catalog/import.html", {"form": form}, status=400 if form.errors else 200)
