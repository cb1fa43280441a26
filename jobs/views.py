"""Job pages: the wizard, the list, one job's live page, two runs compared, the workers, and the jobs a model's
page starts (merge, GGUF export)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs import charts, services
from jobs.forms import JobForm
from jobs.models import FINAL_STATES, Job, Priority, Status, Worker
from jobs.training import METHODS, TASKS
from webapp.catalog.models import CatalogModel
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError

JOBS_PER_PAGE = 50
LOG_LINES = 200


def is_htmx(request: HttpRequest) -> bool:
    # django-htmx's middleware sets request.htmx; the stubs of HttpRequest do not know it.
    return bool(getattr(request, "htmx", False))


def job_list(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.for_user(request.user).select_related("base_model", "result_model")
    filters = {name: request.GET.get(name, "") for name in ("status", "task", "method", "model")}
    for name in ("status", "task", "method"):
        if filters[name]:
            jobs = jobs.filter(**{name: filters[name]})
    if filters["model"]:
        jobs = jobs.filter(base_model__pk=filters["model"]) if services.valid_uuid(filters["model"]) else jobs.none()
    page = Paginator(jobs.order_by("-created_at"), JOBS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {
            "job": job,
            "duration": charts.describe_duration(job.duration.total_seconds() if job.duration else None),
            "main_metric": charts.main_metric(job.metrics or {}),
        }
        for job in page.object_list
    ]
    context = {
        "page": page,
        "rows": rows,
        "filters": filters,
        "statuses": Status.choices,
        "tasks": TASKS,
        "methods": METHODS + ("merge",),
        "models": CatalogModel.objects.visible_to(request.user).order_by("name").only("id", "name"),
    }
    return render(request, "jobs/list.html", context)


def job_new(request: HttpRequest) -> HttpResponse:
    """The wizard: choices re-render as the user picks (htmx), then a review page, then submit."""
    data = request.POST if request.method == "POST" else (request.GET if request.GET.get("task") else None)
    form = JobForm(data, user=request.user, initial={"task": request.GET.get("task", "sft")})
    # A GET re-renders choices as the user picks: nothing was submitted yet, so no "required" errors.
    form.quiet = request.method != "POST"
    submit_token = request.POST.get("submit_token", "") if request.method == "POST" else ""
    if request.POST.get("action") == "submit" and (done := services.submitted_job(request.user, submit_token)):
        # The review page again (browser Back, a second click): its job exists already, checked or not.
        messages.info(request, "This review was already submitted: here is its job.")
        return redirect("jobs:detail", pk=done.pk)
    if request.method == "POST" and form.is_valid():
        assert form.plan is not None
        if request.POST.get("action") == "submit":
            job = services.create_job(form.plan, submit_token=submit_token or None, priority=form.cleaned_data.get("priority") or Priority.NORMAL)
            messages.success(request, "Job submitted: it starts as soon as a worker is free.")
            return redirect("jobs:detail", pk=job.pk)
        # The review page carries the choices on, unchanged, to the final submit (checked again there), with a
        # token of its own: submitting one review twice opens the job it made instead of making another.
        carried = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in {"csrfmiddlewaretoken", "action", "submit_token"}
            for value in values
        ]
        context = {
            "form": form, "plan": form.plan, "workers": services.online_workers(), "carried": carried,
            "submit_token": uuid.uuid4().hex, "queue_position": services.queue_position(form.plan.queue),
        }
        return render(request, "jobs/review.html", context)
    template = "jobs/_wizard_form.html" if is_htmx(request) and request.method == "GET" else "jobs/new.html"
    return render(request, template, {"form": form})


def job_detail(request: HttpRequest, pk: str) -> HttpResponse:
    job = owned_or_404(Job.objects.select_related("base_model", "result_model", "retry_of"), request.user, pk)
    context = job_context(job)
    # A poll swaps the progress and, out of band, the actions: Cancel goes when the job ends, Retry comes.
    template = "jobs/_live.html" if is_htmx(request) else "jobs/detail.html"
    return render(request, template, context)


def job_context(job: Job) -> dict[str, Any]:
    events = list(job.events.order_by("-id")[: charts.MAX_POINTS])[::-1]
    datasets = list(job.datasets.order_by("created_at"))
    names = [dataset.name for dataset in datasets]
    return {
        "job": job,
        "datasets": datasets,
        "log_lines": [charts.log_line(event, names) for event in events[-LOG_LINES:]],
        "chart": charts.loss_chart(events),
        "metric_rows": charts.metric_rows(job.metrics),
        "percent": charts.percent_done(job),
        "final": job.status in FINAL_STATES,
        "queue_position": services.queue_position(job.queue, job) if job.is_waiting else None,
    }


@require_POST
def job_cancel(request: HttpRequest, pk: str) -> HttpResponse:
    job = owned_or_404(Job, request.user, pk)
    try:
        services.cancel(job)
    except LayercakeError as error:
        messages.error(request, error.message)
        return redirect("jobs:detail", pk=job.pk)
    messages.info(request, "Cancelled." if job.status == Status.CANCELLED else "Stopping at the next step.")
    return redirect("jobs:detail", pk=job.pk)


@require_POST
def job_retry(request: HttpRequest, pk: str) -> HttpResponse:
    job = owned_or_404(Job, request.user, pk)
    try:
        retried = services.retry(job)
    except LayercakeError as error:
        messages.error(request, error.message)
        return redirect("jobs:detail", pk=job.pk)
    messages.success(request, "A new attempt is queued.")
    return redirect("jobs:detail", pk=retried.pk)


@require_POST
def merge_model(request: HttpRequest, pk: str) -> HttpResponse:
    """A model page's "Make a full model" button: a merge job on the adapter."""
    started = "Merging: a job makes a full model from this adapter and proves it answers the same."
    return start_on_model(request, pk, services.start_merge, started)


@require_POST
def export_model(request: HttpRequest, pk: str) -> HttpResponse:
    """A model page's "Export to GGUF" form: an export job of the chosen type."""
    output_type = request.POST.get("type", "")
    started = "Exporting: a job writes the GGUF and its Ollama Modelfile, then proves it answers like the model."
    return start_on_model(request, pk, lambda model, owner: services.start_export(model, owner, output_type), started)


def start_on_model(request: HttpRequest, pk: str, start: Callable[[CatalogModel, Any], Job], started: str) -> HttpResponse:
    """Off to the new job's live page, or back to the model's page with the reason it cannot start."""
    model = owned_or_404(CatalogModel, request.user, pk)
    try:
        job = start(model, request.user)
    except LayercakeError as error:
        messages.error(request, error.message)
        return redirect("catalog:detail", pk=model.pk)
    messages.success(request, started)
    return redirect("jobs:detail", pk=job.pk)


def job_compare(request: HttpRequest) -> HttpResponse:
    """Two of the user's runs side by side: loss curves on shared axes and their metrics (`?job=<id>&job=<id>`)."""
    ids = [value for value in request.GET.getlist("job") if value][:2]
    jobs = [owned_or_404(Job.objects.select_related("base_model", "result_model"), request.user, pk) for pk in ids]
    choices = Job.objects.for_user(request.user).select_related("base_model").order_by("-created_at")[:JOBS_PER_PAGE]
    selected = [str(job.pk) for job in jobs]
    context: dict[str, Any] = {"jobs": jobs, "choices": choices, "pickers": (selected + ["", ""])[:2]}
    if len(jobs) == 2:
        context.update(charts.compare_runs(jobs))
    return render(request, "jobs/compare.html", context)


def worker_list(request: HttpRequest) -> HttpResponse:
    workers = Worker.objects.select_related("current_job").order_by("-last_heartbeat")
    rows = [
        {"worker": worker, "online": worker.is_online(settings.LAYERCAKE_WORKER_OFFLINE_AFTER_SECONDS),
         # Someone else's job shows as busy, never by name.
         "own_job": worker.current_job if worker.current_job and worker.current_job.owner_id == request.user.pk else None}
        for worker in workers
    ]
    return render(request, "workers/list.html", {"rows": rows})
