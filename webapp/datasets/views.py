"""Dataset pages: the list with the upload form, a dataset's profile, its settings and its removal."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from webapp.datasets import services
from webapp.datasets.forms import SettingsForm, UploadForm
from webapp.datasets.models import Dataset
from webapp.datasets.presenting import mapping_rows, profile_context
from webapp.datasets.uploads import BodyLimits
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError


@require_GET
def dataset_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request, UploadForm(user=request.user))


def _list_page(request: HttpRequest, form: UploadForm, status: int = 200, error: str = "", help_url: str = "") -> HttpResponse:
    datasets = Dataset.objects.for_user(request.user)
    context = {"datasets": datasets, "form": form, "max_upload_mb": settings.LAYERCAKE_MAX_UPLOAD_MB, "upload_error": error,
               "upload_help_url": help_url}
    return render(request, "datasets/list.html", context, status=status)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _refuse(request: HttpRequest, problem: LayercakeError, form: UploadForm | None = None) -> HttpResponse:
    if _wants_json(request):
        details = [error.as_dict() for error in problem.details]
        return JsonResponse({"error": problem.message, "details": details}, status=problem.status)
    if form is None or not form.is_bound:
        # Refused before the body was read (too large): there is no bound form to attach the error to.
        return _list_page(request, UploadForm(user=request.user), status=problem.status, error=problem.message,
                          help_url=getattr(problem, "help_url", ""))
    if getattr(problem, "help_url", ""):  # over the quota: the bound form cannot carry the link, the page can
        return _list_page(request, form, status=problem.status, error=problem.message, help_url=problem.help_url)  # type: ignore[attr-defined]
    form.add_error(None, problem.message)
    return _list_page(request, form, status=problem.status)


# The upload handlers must be set before anything reads the body, and CSRF checking reads it:
# so the view is exempted and protected again inside, once the size limit is in place (Django docs,
# "Modifying upload handlers on the fly").
@csrf_exempt
@require_POST
def dataset_upload(request: HttpRequest) -> HttpResponse:
    try:
        limits = BodyLimits.install(request, request.user)  # upload limit and quota, on the declared size
    except LayercakeError as problem:
        return _refuse(request, problem)
    return _upload(request, limits)


@csrf_protect
def _upload(request: HttpRequest, limits: BodyLimits) -> HttpResponse:
    form = UploadForm(request.POST, request.FILES, user=request.user)
    try:
        limits.check_streamed()
    except LayercakeError as too_much:
        return _refuse(request, too_much)
    if not form.is_valid():
        field, messages_of_field = next(iter(form.errors.items()))
        message = str(messages_of_field[0])
        problem = LayercakeError(f"{field}: {message}" if field != "__all__" else message)
        return _refuse(request, problem, form)
    values = form.cleaned_data
    try:
        dataset = services.ingest(
            values["file"],
            request.user,
            name=values["name"],
            task=values["task"],
            validation_upload=values.get("validation_file"),
            validation_fraction=values.get("validation_fraction") or 0.0,
            profile_model=values.get("profile_model"),
            max_length=values.get("max_length") or None,
            read_choice=form.read_choice(),
        )
    except LayercakeError as problem:
        return _refuse(request, problem, form)
    url = reverse("datasets:detail", args=[dataset.pk])
    if _wants_json(request):
        return JsonResponse({"id": str(dataset.pk), "url": url}, status=201)
    return redirect(url)


@require_GET
def dataset_detail(request: HttpRequest, pk: str) -> HttpResponse:
    dataset = owned_or_404(Dataset.objects.select_related("profile_model"), request.user, pk)
    context = {"dataset": dataset, **profile_context(dataset.profile, dataset.preview, dataset.shape)}
    context["queue_position"] = services.check_queue_position(dataset)
    if getattr(request, "htmx", False):
        return render(request, "datasets/_checked.html", context)
    initial = {
        "task": dataset.declared_task,
        "validation_fraction": dataset.validation_fraction,
        "profile_model": dataset.profile_model,
        "max_length": services.bounded_max_length(dataset),
    }
    form = SettingsForm(initial=initial, dataset=dataset, user=request.user)
    context["settings_form"] = form
    context["mapping_rows"], context["other_mapping_rows"] = mapping_rows(form, dataset.shape, dataset.declared_task)
    return render(request, "datasets/detail.html", context)


@require_POST
def dataset_settings(request: HttpRequest, pk: str) -> HttpResponse:
    dataset = owned_or_404(Dataset, request.user, pk)
    form = SettingsForm(request.POST, dataset=dataset, user=request.user)
    if form.is_valid():
        values = form.cleaned_data
        try:
            services.change_settings(
                dataset,
                mapping=form.mapping(),
                task=values["task"],
                validation_fraction=values["validation_fraction"] if values["validation_fraction"] is not None else None,
                profile_model=values["profile_model"] or "",
                max_length=values["max_length"],
                read_choice=form.read_choice(),
            )
            messages.success(request, "Settings saved: the dataset is being checked again.")
        except LayercakeError as problem:
            messages.error(request, problem.message)
    else:
        messages.error(request, "The settings were not saved: " + "; ".join(str(e) for errors in form.errors.values() for e in errors))
    return redirect("datasets:detail", pk=dataset.pk)


@require_POST
def dataset_restore(request: HttpRequest, pk: str) -> HttpResponse:
    dataset = owned_or_404(Dataset, request.user, pk)
    try:
        services.restore_last_ready_settings(dataset)
        messages.success(request, "The last working settings are back: the dataset is being checked again.")
    except LayercakeError as problem:
        messages.error(request, problem.message)
    return redirect("datasets:detail", pk=dataset.pk)


@require_POST
def dataset_deduplicate(request: HttpRequest, pk: str) -> HttpResponse:
    dataset = owned_or_404(Dataset, request.user, pk)
    try:
        copy = services.drop_exact_duplicates(dataset)
    except LayercakeError as problem:
        messages.error(request, problem.message)
        return redirect("datasets:detail", pk=dataset.pk)
    messages.success(request, f"{copy.name} is a new dataset without the exact duplicates; {dataset.name} is unchanged.")
    return redirect("datasets:detail", pk=copy.pk)


@require_POST
def dataset_delete(request: HttpRequest, pk: str) -> HttpResponse:
    dataset = owned_or_404(Dataset, request.user, pk)
    name = dataset.name
    services.delete_dataset(dataset)
    messages.success(request, f"Deleted {name} and its files.")
    return redirect("datasets:list")
