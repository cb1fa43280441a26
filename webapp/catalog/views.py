"""Catalog pages: the model tree, one model's page, downloads, the deployment table, imports, deletion.

Merging a model and exporting it to GGUF start jobs: their actions are in jobs.views.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST

from webapp.catalog import deployment, downloads, gguf_export, importing, presenting, services
from webapp.catalog.forms import ImportForm
from webapp.catalog.models import CatalogModel
from webapp.datasets.uploads import BodyLimits
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError
from webapp.lib.metrics import metric_rows


def model_list(request: HttpRequest) -> HttpResponse:
    models = list(CatalogModel.objects.visible_to(request.user).order_by("created_at"))
    return render(request, "catalog/list.html", {"rows": presenting.model_tree(models), "count": len(models)})


def detail_context(request: HttpRequest, model: CatalogModel) -> dict[str, Any]:
    return {
        "model": model,
        "lineage": model.lineage(),
        "children": model.children.visible_to(request.user),  # type: ignore[attr-defined]
        "can_rename": model.owner_id == request.user.pk,
        "can_delete": model.owner_id == request.user.pk,
        "metric_rows": metric_rows(model.metrics),
        "merge_proof": (model.metrics or {}).get("merge_proof"),
        "card": presenting.model_card_text(model, downloads.site_root(request)),
        "adapter_summary": presenting.adapter_summary(model),
        "origin": presenting.origin_of(model),
        "deployment": presenting.deployment_table(model),
        "can_export": model.owner_id == request.user.pk and model.is_derived,
        "gguf_types": gguf_export.OUTPUT_TYPES,
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


def download_gguf(request: HttpRequest, pk: str, output_type: str, name: str = "gguf") -> StreamingHttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    return downloads.gguf_response(model, request.user, output_type, name)


@require_POST
def profile(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    try:
        deployment.request_deployment_profile(model)
        messages.success(request, "Measuring the three ways to run it on a worker; the table fills in when done.")
    except LayercakeError as error:
        messages.error(request, error.message)
    return redirect("catalog:detail", pk=model.pk)


def deployment_partial(request: HttpRequest, pk: str) -> HttpResponse:
    model = owned_or_404(CatalogModel, request.user, pk)
    return render(request, "catalog/_deployment.html", {"model": model, "deployment": presenting.deployment_table(model)})


def _import_page(request: HttpRequest, form: ImportForm, problem: LayercakeError | None = None) -> HttpResponse:
    context = {"form": form, "max_upload_mb": settings.LAYERCAKE_MAX_UPLOAD_MB, "import_error": problem}
    status = problem.status if problem is not None else (400 if form.errors else 200)
    return render(request, "catalog/import.html", context, status=status)


# As the dataset upload: the size limits go in before anything reads the body, and CSRF checking reads
# it, so the view is exempted and protected again inside once the limits are in place.
@csrf_exempt
def import_model(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _import_page(request, ImportForm(user=request.user))
    try:
        limits = BodyLimits.install(request, request.user)  # upload limit and quota, on the declared size
    except LayercakeError as problem:
        return _import_page(request, ImportForm(user=request.user), problem)
    return _import(request, limits)


@csrf_protect
def _import(request: HttpRequest, limits: BodyLimits) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES, user=request.user)
    try:
        limits.check_streamed()
    except LayercakeError as problem:
        return _import_page(request, ImportForm(user=request.user), problem)
    if not form.is_valid():
        return _import_page(request, form)
    try:
        model = importing.import_upload(
            form.cleaned_data["file"], kind=form.cleaned_data["kind"], name=form.cleaned_data["name"],
            owner=request.user, base=form.cleaned_data.get("base"),
        )
    except LayercakeError as error:
        if error.status == 413:  # too large, or over the quota: said above the form, with where to look
            return _import_page(request, form, error)
        form.add_error("file", error.message)
        for detail in error.details:
            form.add_error(None, str(detail))
        return _import_page(request, form)
    messages.success(request, f"Imported {model.name}.")
    return redirect("catalog:detail", pk=model.pk)


@require_http_methods(["GET", "POST"])
def delete(request: HttpRequest, pk: str) -> HttpResponse:
    """GET: what deleting removes, or what stops it; POST: delete. Owner only: shared bases are nobody's to delete."""
    model = owned_or_404(CatalogModel.objects.owned_by(request.user), request.user, pk)
    if request.method == "POST":
        name = model.name
        try:
            services.delete_model(model)
        except LayercakeError as error:
            context = {"model": model, "dependants": error.details, "delete_error": error.message}
            return render(request, "catalog/delete.html", context, status=error.status)
        messages.success(request, f"Deleted {name} and its files.")
        return redirect("catalog:list")
    return render(request, "catalog/delete.html", {"model": model, "dependants": services.dependants_of(model)})
