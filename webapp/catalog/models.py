"""The model catalog: base models and what was derived from them (adapters, full fine-tunes, merges)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from jobs.training import registry


class Kind(models.TextChoices):
    BASE = "base", "Base model"
    ADAPTER = "adapter", "Adapter"
    FULL = "full", "Full model"
    MERGED = "merged", "Merged model"


class Family(models.TextChoices):
    CAUSAL_LM = "causal_lm", "Causal language model"
    ENCODER = "encoder", "Encoder"
    SEQ2SEQ = "seq2seq", "Sequence-to-sequence"


class CatalogModelQuerySet(models.QuerySet["CatalogModel"]):
    def visible_to(self, user: Any) -> CatalogModelQuerySet:
        """Shared models (no owner: the bundled and admin-imported bases) plus the user's own."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(Q(owner__isnull=True) | Q(owner=user))

    def owned_by(self, user: Any) -> CatalogModelQuerySet:
        """The user's own models: what they may change (shared bases are seen by all, changed by none)."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(owner=user)

    def bases(self) -> CatalogModelQuerySet:
        return self.filter(kind=Kind.BASE)

    def derived(self) -> CatalogModelQuerySet:
        return self.exclude(kind=Kind.BASE)


NAME_MAX_LENGTH = 200


class CatalogModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="catalog_models",
        help_text="Empty for models shared with every user (the bundled bases).",
    )
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    family = models.CharField(max_length=16, choices=Family.choices)
    source = models.CharField(max_length=500, blank=True, help_text="Where it came from: package, folder, hub id.")
    architecture = models.CharField(max_length=200, blank=True)
    model_type = models.CharField(max_length=100, blank=True)
    parameter_count = models.BigIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    dtype = models.CharField(max_length=32, blank=True)
    # The task a derived model was trained for (empty for bases); what a model *can* be tuned for is `tasks`.
    task = models.CharField(max_length=32, blank=True)
    has_chat_template = models.BooleanField(default=False)
    licence = models.CharField(max_length=100, blank=True)
    storage_prefix = models.CharField(max_length=300, help_text="Folder in file storage holding its files.")
    files = models.JSONField(default=list, help_text='[{"name", "size_bytes", "sha256"}]')
    metrics = models.JSONField(default=dict, blank=True)
    deployment = models.JSONField(
        default=dict, blank=True, help_text="Measured costs of the three ways to run it (webapp.catalog.profiling)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CatalogModelQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "kind"]), models.Index(fields=["source"])]

    def __str__(self) -> str:
        return self.name

    @property
    def is_shared(self) -> bool:
        return self.owner_id is None

    def lineage(self) -> list[CatalogModel]:
        """From the root base down to this model."""
        chain = [self]
        while chain[0].parent_id is not None:
            chain.insert(0, chain[0].parent)  # type: ignore[arg-type]
        return chain

    @property
    def is_derived(self) -> bool:
        return self.kind != Kind.BASE

    @property
    def tasks(self) -> list[str]:
        """What it serves, computed from its architecture by the registry (never stored, so a new task needs no data
        migration): an adapter serves the task it was trained for; a base or full model every task of its family,
        the one it was trained for first."""
        if self.kind == Kind.ADAPTER:
            return [self.task] if self.task else []
        served = registry.tasks_for_architecture(self.family)
        return [self.task, *(name for name in served if name != self.task)] if self.task in served else served

    @property
    def can_merge(self) -> bool:
        # An adapter's architecture reads "<PEFT_TYPE> adapter on <base architecture>" (catalog.registering.derived_facts).
        return self.kind == Kind.ADAPTER and registry.peft_type_mergeable(self.architecture.split(" ", 1)[0])

    def local_dir(self):  # -> Path; typed loosely to keep pathlib out of the model import
        from webapp.catalog.storing import local_dir

        return local_dir(self)
