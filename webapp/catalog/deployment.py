"""The deployment table of a derived model: its three ways to run measured on a `cpu` worker, queued after
commit, recovered when its message or its worker is lost (the measurement itself is webapp.catalog.profiling)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from webapp.catalog import profiling
from webapp.catalog.models import CatalogModel, Kind
from webapp.catalog.storing import local_dir
from webapp.lib.background import send_after_commit
from webapp.lib.errors import LayercakeError

logger = logging.getLogger(__name__)

PROFILE_QUEUE = "cpu"


def request_deployment_profile(model: CatalogModel, sends: int = 0) -> dict[str, Any]:
    """Queue the profiling task (cpu queue) after commit; the page shows `queued` until the figures land.

    `sends`: messages already sent for this request (the recovery re-sends it with the count so far).
    """
    from webapp.catalog.tasks import profile_deployment

    if not model.is_derived:
        raise LayercakeError("The deployment table compares ways to run a derived model; a base model has only one.")
    model_id = str(model.pk)

    def unreachable(reason: str) -> None:
        CatalogModel.objects.filter(pk=model_id, deployment__status="queued").update(
            deployment={"status": "failed", "error": "The measuring queue was unreachable: ask again in a moment."}
        )

    now = timezone.now().isoformat()
    with transaction.atomic():  # the row says `queued` before the message can arrive
        task_id = send_after_commit(profile_deployment, [model_id], queue=PROFILE_QUEUE, on_failure=unreachable)
        state = {"status": "queued", "requested_at": now, "task_id": task_id, "sent_at": now, "sends": sends + 1}
        CatalogModel.objects.filter(pk=model.pk).update(deployment=state)
    model.deployment = state
    return state


def recover_stuck_profiles(online_queues: Collection[str]) -> list[CatalogModel]:
    """Deployment profiles whose message was lost (`queued` LAYERCAKE_RESEND_AFTER_SECONDS after it was sent)
    or whose worker died (`running` for LAYERCAKE_PROFILE_STUCK_SECONDS): sent again, up to
    LAYERCAKE_MAX_SENDS messages per request, then marked failed with the reason the page shows. A queued
    one is not given up while a `cpu` worker is online (`online_queues`: the queues that online workers
    consume, told by the jobs app, which keeps the worker registry): it may wait behind a long training job."""
    now = timezone.now()
    bounds = {
        "queued": ("sent_at", timedelta(seconds=settings.LAYERCAKE_RESEND_AFTER_SECONDS)),
        "running": ("started_at", timedelta(seconds=settings.LAYERCAKE_PROFILE_STUCK_SECONDS)),
    }
    recovered = []
    for model in CatalogModel.objects.filter(deployment__status__in=list(bounds)):
        state = dict(model.deployment)
        since_key, bound = bounds[state["status"]]
        since = parse_datetime(str(state.get(since_key) or state.get("requested_at") or ""))
        if since is not None and since > now - bound:
            continue
        sends = int(state.get("sends") or 1)
        waits_for_a_busy_worker = state["status"] == "queued" and PROFILE_QUEUE in online_queues
        if sends >= settings.LAYERCAKE_MAX_SENDS and not waits_for_a_busy_worker:
            logger.error("profile of %s: %s after %d messages; giving up", model.id, state["status"], sends)
            reason = (
                f"No worker took the measurement after {sends} tries: the cpu worker may be down."
                if state["status"] == "queued"
                else f"The worker measuring it stopped {sends} times (it may have run out of memory)."
            )
            CatalogModel.objects.filter(pk=model.pk, deployment__status=state["status"]).update(
                deployment={"status": "failed", "error": reason}
            )
        else:
            logger.warning("profile of %s: %s since %s; sending it again", model.id, state["status"], since)
            request_deployment_profile(model, sends=sends)
        recovered.append(model)
    return recovered


def profile_deployment(model: CatalogModel) -> dict[str, Any]:
    """Measure each way to run the model in a fresh process and record the figures in `model.deployment`."""
    sends = (model.deployment or {}).get("sends", 1)
    CatalogModel.objects.filter(pk=model.pk).update(
        deployment={"status": "running", "started_at": timezone.now().isoformat(), "sends": sends}
    )
    base = model.lineage()[0]
    adapter = model if model.kind == Kind.ADAPTER else None
    jobs_before = jobs_running_here()
    try:
        figures = profiling.profile(
            model_dir=local_dir(model),
            base_dir=local_dir(base) if adapter is not None else None,
            storage=profiling.StorageFacts(
                model_bytes=model.size_bytes,
                base_bytes=base.size_bytes,
                base_weight_bytes=weight_bytes(base),
            ),
        )
        jobs = sorted(set(jobs_before) | set(jobs_running_here()))
        state = {"status": "done", "measured_at": timezone.now().isoformat(), **figures, "concurrent_jobs": jobs}
        state["under_load"] = bool(state.get("under_load") or jobs)
    except Exception as error:  # a profile that fails is shown with its reason; the model itself is fine
        logger.exception("profiling %s failed", model.id)
        state = {"status": "failed", "error": str(error)[:500]}
    CatalogModel.objects.filter(pk=model.pk).update(deployment=state)
    model.deployment = state
    return state


def jobs_running_here() -> list[str]:
    """Training jobs running on this machine's workers: they share its CPU with the measurement.

    The jobs app depends on the catalog, not the reverse: its Job model is found by name, never imported.
    """
    host = socket.gethostname()
    workers = apps.get_model("jobs", "Job").objects.running().values_list("pk", "worker")
    return [str(pk) for pk, worker in workers if worker and worker.rsplit("@", 1)[-1] == host]


def weight_bytes(model: CatalogModel) -> int:
    return sum(entry["size_bytes"] for entry in model.files if entry["name"].endswith(".safetensors"))
