"""Playground work for the resident inference worker (queue `inference`, solo pool: models stay loaded)."""

from __future__ import annotations

from celery import shared_task

from webapp.playground import services


@shared_task(acks_late=False)
def answer_run(run_id: str) -> str:
    # acks_late off: a run that crashed its worker is not worth replaying on the next one.
    from webapp.playground.models import PlaygroundRun

    run = PlaygroundRun.objects.get(pk=run_id)
    services.serve_run(run, services.resident_models())
    return run.status


@shared_task(acks_late=False)
def forget_model(model_id: str) -> bool:
    """A catalog model was deleted: drop its resident copy from this worker's pool."""
    return services.resident_models().forget(model_id)
