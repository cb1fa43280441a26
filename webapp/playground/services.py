"""The playground's operations: start a run (web side) and serve it with resident models (inference worker)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jobs.training import registry
from webapp.catalog import loading
from webapp.catalog.models import CatalogModel, Family, Kind
from webapp.catalog.storing import local_dir
from webapp.lib.background import send_after_commit
from webapp.lib.errors import LayercakeError
from webapp.playground import answering
from webapp.playground.models import PlaygroundRun, Status
from webapp.playground.resident import ResidentModels, ServedModel

logger = logging.getLogger(__name__)

INFERENCE_QUEUE = "inference"
MAX_MODELS_PER_RUN = 4
MAX_PROMPT_CHARS = 4000
_resident: ResidentModels | None = None


def resident_models() -> ResidentModels:
    """This worker process's pool: created once, kept across tasks (the worker runs with a solo pool)."""
    global _resident
    if _resident is None:
        _resident = ResidentModels(
            max_groups=settings.LAYERCAKE_RESIDENT_MODELS,
            max_adapters=settings.LAYERCAKE_RESIDENT_ADAPTERS,
        )
    return _resident


def forget_resident(model_id: str) -> None:
    """Ask the inference worker to drop a deleted model's resident copy. Best effort: a run never serves a
    deleted model (its row is gone), and the pool's least-recently-used eviction would drop it in time."""
    from webapp.playground.tasks import forget_model

    # A broker that is down is only logged: the copy costs memory until it is evicted.
    send_after_commit(forget_model, [model_id], queue=INFERENCE_QUEUE)


def playground_models(user: Any) -> list[CatalogModel]:
    return list(CatalogModel.objects.visible_to(user).order_by("created_at"))


def start_run(owner: Any, prompt: str, models: list[CatalogModel], generation: Mapping[str, Any] | None = None) -> PlaygroundRun:
    """Record the run and send it to the inference queue after commit; `generation` is validated here."""
    settings = answering.GenerationSettings.from_input(generation or {})
    prompt = prompt.strip()
    if not prompt:
        raise LayercakeError("Type an input for the models to answer.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise LayercakeError(f"The input is {len(prompt)} characters; the playground takes up to {MAX_PROMPT_CHARS}.")
    if not models:
        raise LayercakeError("Pick at least one model.")
    if len(models) > MAX_MODELS_PER_RUN:
        raise LayercakeError(f"Compare up to {MAX_MODELS_PER_RUN} models at once.")
    answers = [{"model": str(m.id), "name": m.name, "kind": m.kind, "status": "waiting"} for m in models]
    with transaction.atomic():
        run = PlaygroundRun.objects.create(owner=owner, prompt=prompt, answers=answers, generation=settings.as_dict())
        send_run(run)
    return run


def send_run(run: PlaygroundRun) -> None:
    """Send the run to the inference queue once its row is committed, with its task id stored on it."""
    from webapp.playground.tasks import answer_run

    run_id = str(run.pk)

    def unreachable(reason: str) -> None:
        stored = PlaygroundRun.objects.filter(pk=run_id).first()
        if stored is not None:
            stored.fail("The inference queue was unreachable: try again in a moment.")

    run.record_sent(send_after_commit(answer_run, [run_id], queue=INFERENCE_QUEUE, on_failure=unreachable))


def recover_stuck_runs() -> list[PlaygroundRun]:
    """Runs whose message was lost are sent again (LAYERCAKE_MAX_SENDS messages, then, unless the inference
    worker is visibly busy, failed with a reason the page shows); runs whose worker died while answering fail.

    A duplicate delivery is harmless: `PlaygroundRun.start` lets one win. A running run is not replayed, for
    the reason `answer_run` is not acks_late: a run that crashed its worker would crash the next one.
    """
    now = timezone.now()
    resend_cutoff = now - timedelta(seconds=settings.LAYERCAKE_PLAYGROUND_RESEND_AFTER_SECONDS)
    stuck_cutoff = now - timedelta(seconds=settings.LAYERCAKE_PLAYGROUND_STUCK_SECONDS)
    recovered = []
    waiting = PlaygroundRun.objects.filter(status=Status.QUEUED).filter(
        Q(sent_at__lt=resend_cutoff) | Q(sent_at__isnull=True, created_at__lt=resend_cutoff)
    )
    for run in waiting:
        # An inference worker that took another run since, or is answering one, is busy: this one waits its turn.
        busy = PlaygroundRun.objects.filter(
            Q(started_at__gt=run.sent_at or run.created_at) | Q(status=Status.RUNNING, started_at__gte=stuck_cutoff)
        ).exists()
        if run.sends >= settings.LAYERCAKE_MAX_SENDS and not busy:
            logger.error("playground run %s: %d messages sent, none answered; giving up", run.pk, run.sends)
            run.fail(
                f"No inference worker took this run after {run.sends} tries: the inference worker may be down. "
                "Try again in a few minutes."
            )
        else:
            logger.warning("playground run %s: still queued since %s; sending it again", run.pk, run.sent_at)
            with transaction.atomic():
                send_run(run)
        recovered.append(run)
    for run in PlaygroundRun.objects.filter(status=Status.RUNNING, started_at__lt=stuck_cutoff):
        logger.error("playground run %s: running on %s since %s; its worker is gone", run.pk, run.worker, run.started_at)
        run.fail("The inference worker stopped while answering (it may have run out of memory): try again.")
        recovered.append(run)
    return recovered


def served_model(model: CatalogModel, companions: list[CatalogModel]) -> tuple[ServedModel, bool]:
    """How the pool serves `model`: an adapter over its base; a bare encoder through a companion classifier's
    resident base with adapters switched off (a base encoder has no head of its own); anything else as itself."""
    if model.kind == Kind.ADAPTER and model.parent is not None:
        parent = model.parent
        return ServedModel(str(model.id), model.name, model.kind, local_dir(model), str(parent.id), local_dir(parent)), False
    if model.kind == Kind.BASE and model.family == Family.ENCODER:
        tuned = next((c for c in companions if c.kind == Kind.ADAPTER and c.parent_id == model.id), None)
        if tuned is None:
            raise LayercakeError(
                f"{model.name} is a bare encoder with no task head: pick it together with a classifier tuned from it."
            )
        spec, _ = served_model(tuned, [])
        return spec, True
    return ServedModel(str(model.id), model.name, model.kind, local_dir(model)), False


def has_untrained_head(base: CatalogModel, task: str) -> bool:
    """A bare base served for a classifier task answers through a head made at random when it was loaded:
    its scores (about 1/N per label) say nothing about the base, only that it has no head of its own."""
    return task in registry.CLASSIFIER_TASKS and loading.task_of_folder(local_dir(base)) not in registry.CLASSIFIER_TASKS


def generation_settings(run: PlaygroundRun) -> answering.GenerationSettings:
    return answering.GenerationSettings.from_input(run.generation or {})


def serve_run(run: PlaygroundRun, pool: ResidentModels) -> None:
    """Answer the run with each model in turn on this worker, saving streamed text as it comes."""
    if not run.start(socket.gethostname()):
        logger.warning("playground run %s: already %s, delivery ignored", run.pk, run.status)
        return
    models = {str(m.id): m for m in CatalogModel.objects.filter(pk__in=[a["model"] for a in run.answers]).select_related("parent")}
    companions = list(models.values())
    try:
        for entry in run.answers:
            serve_one(run, entry, models.get(entry["model"]), companions, pool)
    except BaseException as error:
        run.fail(f"The inference worker stopped: {error}")
        raise
    run.finish()


def serve_one(run: PlaygroundRun, entry: dict[str, Any], model: CatalogModel | None, companions: list[CatalogModel],
              pool: ResidentModels) -> None:
    entry["status"] = "running"
    run.save_answers()
    started = time.perf_counter()
    try:
        if model is None:
            raise LayercakeError("This model was deleted.")
        spec, adapters_off = served_model(model, companions)

        def on_update(partial: dict[str, Any]) -> None:
            entry.update(partial)
            run.save_answers()

        with pool.use(spec, adapters_off=adapters_off) as served:
            entry["mode"] = served.mode
            entry["task"] = served.task
            entry["untrained_head"] = adapters_off and has_untrained_head(model, served.task)
            entry.update(answering.answer(served, run.prompt, on_update, generation_settings(run)))
        entry["status"] = "done"
    except LayercakeError as error:
        entry.update(status="failed", error=error.message)
    except Exception as error:  # one model failing must not hide the others' answers
        logger.exception("playground run %s: %s failed", run.pk, entry.get("model"))
        entry.update(status="failed", error=f"{type(error).__name__}: {error}")
    entry["seconds"] = round(time.perf_counter() - started, 3)
    run.save_answers()
