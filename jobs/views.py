"""Job pages: the wizard, the list, one job's live page, and the workers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs import charts, services
from jobs.forms import JobForm
from jobs.models import FINAL_STATES, Job, Status, Worker
from jobs.training import METHODS, TASKS
from webapp.catalog.models import CatalogModel
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError

JOBS_PER_PAGE = 50


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
    context = {
        "page": page,
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
    if request.method == "POST" and form.is_valid():
        assert form.plan is not None
        if request.POST.get("action") == "submit":
            job = services.create_job(form.plan)
            messages.success(request, "Job submitted: it starts as soon as a worker is free.")
            return redirect("jobs:detail", pk=job.pk)
        # The review page carries the choices on, unchanged, to the final submit (checked again there).
        carried = [
            (name, value)
            for name, values in request.POST.lists()
            if name not in {"csrfmiddlewaretoken", "action"}
            for value in values
        ]
        context = {"form": form, "plan": form.plan, "workers": services.online_workers(), "carried": carried}
        return render(request, "jobs/review.html", context)
    template = "jobs/_wizard_form.html" if is_htmx(request) and request.method == "GET" else "jobs/new.html"
    return render(request, template, {"form": form})


def job_detail(request: HttpRequest, pk: str) -> HttpResponse:
    job = owned_or_404(Job.objects.select_related("base_model", "result_model", "retry_of"), request.user, pk)
    context = job_context(job)
    template = "jobs/_progress.html" if is_htmx(request) else "jobs/detail.html"
    return render(request, template, context)


def job_context(job: Job) -> dict[str, Any]:
    events = list(job.events.order_by("-id")[: charts.MAX_POINTS])[::-1]
    return {
        "job": job,
        "datasets": job.datasets.all(),
        "events": events[-15:],
        "chart": charts.loss_chart(events),
        "metric_rows": charts.metric_rows(job.metrics),
        "percent": charts.percent_done(job),
        "final": job.status in FINAL_STATES,
    }


@require_POST
def job_cancel(request: HttpRequest, pk: str) -> HttpResponse:
    job = services.cancel(owned_or_404(Job, request.user, pk))
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


def worker_list(request: HttpRequest) -> HttpResponse:
    workers = Worker.objects.select_related("current_job").order_by("-last_heartbeat")
    rows = [
        {"worker": worker, "online": worker.is_online(settings.LAYERCAKE_WORKER_OFFLINE_AFTER_SECONDS),
         # Someone else's job shows as busy, never by name.
         "own_job": worker.current_job if worker.current_job and worker.current_job.owner_id == request.user.pk else None}
        for worker in workers
    ]
    return render(request, "workers/list.html", {"rows": rows})
