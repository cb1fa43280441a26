"""Operations on one catalog model that its owner asks for: rename it, delete it."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from webapp.catalog.models import NAME_MAX_LENGTH, CatalogModel
from webapp.catalog.storing import remove_model_files
from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)


def clean_model_name(name: Any) -> str:
    """A model name as the catalog keeps it: one line, trimmed, not empty, at most NAME_MAX_LENGTH characters."""
    if not isinstance(name, str):
        raise LayercakeError("A model name is text.", [RowError(None, "name", f"got {type(name).__name__}")])
    cleaned = " ".join(name.split())  # newlines and tabs would break the tree, the zip folder and the card
    if not cleaned:
        raise LayercakeError("Give the model a name: it cannot be empty.", [RowError(None, "name", "empty")])
    if len(cleaned) > NAME_MAX_LENGTH:
        raise LayercakeError(
            f"A model name is at most {NAME_MAX_LENGTH} characters; this one has {len(cleaned)}.",
            [RowError(None, "name", f"{len(cleaned)} characters")],
        )
    return cleaned


def rename_model(model: CatalogModel, name: Any) -> CatalogModel:
    """Give a model a new name; its files, lineage and download links stay as they are."""
    model.name = clean_model_name(name)
    CatalogModel.objects.filter(pk=model.pk).update(name=model.name)
    logger.info("renamed model %s to %r", model.id, model.name)
    return model


class ModelInUse(LayercakeError):
    """409: a job that has not finished, or a model derived from it, depends on the model."""


def dependants_of(model: CatalogModel) -> list[RowError]:
    """What stops `model` from being deleted: unfinished jobs that use or make it, and models derived from it."""
    # Through the model's reverse relations (Job.base_model, Job.result_model): jobs depend on the catalog, not the reverse.
    jobs = {job.pk: job for job in [*model.jobs.active(), *model.produced_by_jobs.active()]}
    found = []
    for job in sorted(jobs.values(), key=lambda job: job.created_at):
        role = "uses it as its base" if job.base_model_id == model.pk else "made it"
        found.append(RowError(None, "job", f"{job.method} job {str(job.pk)[:8]} ({job.status}) {role}: wait for it or cancel it"))
    for child in model.children.order_by("created_at"):
        label = child.name if child.owner_id == model.owner_id else "a model of another user"
        found.append(RowError(None, "model", f"{label} ({child.get_kind_display().lower()}) is derived from it: delete it first"))
    return found


def delete_model(model: CatalogModel) -> None:
    """Delete a model: refused (409, naming what depends on it) while an unfinished job or a derived model
    needs it. The row goes in a transaction; its stored files, local cache and resident playground copies
    after commit, so a refusal or a rollback leaves every file in place. Finished jobs keep their history."""
    with transaction.atomic():
        # Locked: a job submitted on it meanwhile waits for this transaction, then finds it gone.
        locked = CatalogModel.objects.select_for_update().filter(pk=model.pk).first()
        if locked is None:
            return
        dependants = dependants_of(locked)
        if dependants:
            raise ModelInUse(
                f"{locked.name} cannot be deleted while {len(dependants)} thing(s) depend on it: "
                + "; ".join(problem.message for problem in dependants) + ".",
                dependants,
                status=409,
            )
        prefix, files, model_id = locked.storage_prefix, list(locked.files), str(locked.pk)
        locked.delete()
        transaction.on_commit(lambda: remove_model_files(model_id, prefix, files), robust=True)
    logger.info("deleted model %s (%s)", model.name, model_id)
