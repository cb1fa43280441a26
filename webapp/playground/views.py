"""Playground pages: pick models, type an input, watch the answers arrive side by side."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from jobs.held_out import held_out_prompts
from webapp.catalog.models import CatalogModel
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError
from webapp.playground import services
from webapp.playground.answering import GenerationSettings
from webapp.playground.models import PlaygroundRun

GENERATION_FIELDS = tuple(GenerationSettings.LIMITS)


def index(request: HttpRequest) -> HttpResponse:
    chosen = request.GET.getlist("model")
    preselected: set[str] = set()
    suggestions: list[str] = []
    for pk in chosen:
        model = owned_or_404(CatalogModel, request.user, pk)
        # Side by side by default: a tuned model next to its base, tried on the rows its run held out.
        preselected |= {str(model.id), str(model.lineage()[0].id)}
        suggestions += [prompt for prompt in held_out_prompts(model) if prompt not in suggestions]
    return render(request, "playground/index.html", {
        "models": services.playground_models(request.user), "selected": preselected, "run": None,
        "prompt": request.GET.get("prompt", "")[:4000], "generation": GenerationSettings().as_dict(),
        "suggestions": suggestions, "chosen": chosen,
    })


@require_POST
def create_run(request: HttpRequest) -> HttpResponse:
    models = [owned_or_404(CatalogModel, request.user, pk) for pk in request.POST.getlist("models")]
    try:
        run = services.start_run(request.user, request.POST.get("prompt", ""), models, generation=request.POST)
    except LayercakeError as error:
        messages.error(request, error.message)
        return render(request, "playground/index.html", {
            "models": services.playground_models(request.user), "selected": {str(m.id) for m in models},
            "run": None, "prompt": request.POST.get("prompt", ""),
            "generation": {name: request.POST.get(name, "") for name in GENERATION_FIELDS},
            "generation_errors": {detail.field: detail.message for detail in error.details},
        }, status=error.status)
    return redirect("playground:run", pk=run.pk)


def run_page(request: HttpRequest, pk: str) -> HttpResponse:
    run = owned_or_404(PlaygroundRun, request.user, pk)
    return render(request, "playground/index.html", {
        "models": services.playground_models(request.user), "selected": {a["model"] for a in run.answers},
        "run": run, "prompt": run.prompt, "generation": services.generation_settings(run).as_dict(),
    })


def answers(request: HttpRequest, pk: str) -> HttpResponse:
    run = owned_or_404(PlaygroundRun, request.user, pk)
    return render(request, "playground/_answers.html", {"run": run})
