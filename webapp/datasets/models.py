"""A dataset: an uploaded file, its checked state, its profile and its normalized copy."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.lib.errors import RowError
from webapp.lib.states import move


class Status(models.TextChoices):
    UPLOADED = "uploaded", "Uploaded"
    # Its rows are being checked. The value is API v1's word, kept as published; "validation" now names only
    # the held-out split (the validation file, the validation fraction).
    CHECKING = "validating", "Checking"
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"


FINAL_STATES = frozenset({Status.READY, Status.INVALID})


class DatasetQuerySet(models.QuerySet["Dataset"]):
    def for_user(self, user: Any) -> DatasetQuerySet:
        return self.filter(owner=user)

    def ready(self) -> DatasetQuerySet:
        return self.filter(status=Status.READY)


class Dataset(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    original_filename = models.CharField(max_length=255, blank=True, help_text="The client's file name: a label only.")
    file_format = models.CharField(max_length=16)
    source_file = models.CharField(max_length=300, help_text="Storage name of the uploaded file.")
    size_bytes = models.BigIntegerField(default=0)
    validation_source_file = models.CharField(max_length=300, blank=True)
    validation_file_format = models.CharField(max_length=16, blank=True)
    validation_original_filename = models.CharField(max_length=255, blank=True)
    validation_fraction = models.FloatField(default=0.0)
    # How to read the file: the person's overrides (reading.layout.ReadChoice.as_dict), and what the
    # last check detected and used (FileLayout.as_dict, plus rows read as written despite odd quoting).
    read_choice = models.JSONField(default=dict, blank=True, help_text="format / delimiter / header chosen by the user")
    detected = models.JSONField(default=dict, blank=True, help_text="how the last check read the file")

    # Checked against shapes.TASKS by the services (no choices here: the API's task enum is the one).
    declared_task = models.CharField(max_length=32, blank=True)
    column_mapping = models.JSONField(default=dict, blank=True, help_text="expected column -> the file's column")
    profile_model = models.ForeignKey(
        "catalog.CatalogModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    max_length = models.PositiveIntegerField(default=1024)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    failure_reason = models.TextField(blank=True)
    errors = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    # One of the registry's shapes, set by the check (no choices here: a new shape must not need a migration).
    shape = models.CharField(max_length=32, blank=True)
    task = models.CharField(max_length=32, blank=True)
    rows = models.BigIntegerField(null=True, blank=True)
    columns = models.JSONField(default=list, blank=True)
    profile = models.JSONField(default=dict, blank=True)
    preview = models.JSONField(default=list, blank=True)
    normalized = models.JSONField(default=dict, blank=True, help_text="split -> storage name of its Parquet file")
    task_id = models.CharField(max_length=64, blank=True)
    check_attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Deliveries of the check since the last request: a file that kills its worker is caught."
    )
    check_sends = models.PositiveSmallIntegerField(
        default=0, help_text="Messages sent for the check since the last request: the recovery's cap."
    )
    check_sent_at = models.DateTimeField(null=True, blank=True, help_text="When its last check message was sent.")
    check_started_at = models.DateTimeField(null=True, blank=True, help_text="When its last delivery began checking.")
    created_at = models.DateTimeField(auto_now_add=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    check_requested_at = models.DateTimeField(
        default=timezone.now, help_text="When its current check was asked for: its place in the queue."
    )
    last_ready_settings = models.JSONField(
        default=dict, blank=True, help_text="The mapping and task of the last check that made it ready."
    )
    derived_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="versions",
        help_text="The dataset this one was made from (a deduplicated version, for instance).",
    )

    objects = DatasetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def storage_prefix(self) -> str:
        return f"datasets/{self.id}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    def normalized_files(self) -> dict[str, str]:
        """split -> storage name of the normalized Parquet file; empty unless ready."""
        return dict(self.normalized) if self.status == Status.READY else {}

    def api_errors(self) -> list[dict[str, Any]]:
        """What the API lists under `errors`: the reason first, then the row problems."""
        if self.status != Status.INVALID:
            return []
        head = [{"row": None, "field": None, "message": self.failure_reason}] if self.failure_reason else []
        return head + list(self.errors)

    # Transitions: each moves only from the expected states, by a conditional update (webapp.lib.states).

    def begin_check(self) -> bool:
        """uploaded -> checking; False when another delivery of the task got there first."""
        return move(self, {Status.UPLOADED}, status=Status.CHECKING, check_attempts=1, check_started_at=timezone.now())

    def resume_check(self) -> bool:
        """A redelivered task finds it checking (its first worker died): checking is idempotent, so rerun,
        counting the attempt."""
        return move(
            self, {Status.CHECKING}, check_attempts=models.F("check_attempts") + 1, check_started_at=timezone.now()
        )

    def succeed(
        self, *, shape: str, task: str, rows: int, columns: list[str], profile: dict[str, Any],
        preview: list[dict[str, Any]], normalized: dict[str, str], **found: Any,
    ) -> bool:
        # What made it ready, so a later mapping that does not fit can be undone in one step.
        ready_settings = {"column_mapping": dict(self.column_mapping), "declared_task": self.declared_task}
        return move(
            self, {Status.CHECKING}, status=Status.READY, shape=shape, task=task, rows=rows, columns=columns,
            profile=profile, preview=preview, normalized=normalized, failure_reason="", errors=[],
            error_count=0, checked_at=timezone.now(), last_ready_settings=ready_settings, **found,
        )

    def fail(
        self, reason: str, errors: list[RowError] | None = None, error_count: int = 0, **found: Any
    ) -> bool:
        listed = [error.as_dict() for error in errors or []]
        return move(
            self, {Status.UPLOADED, Status.CHECKING}, status=Status.INVALID, failure_reason=reason, errors=listed,
            error_count=max(error_count, len(listed)), normalized={}, checked_at=timezone.now(), **found,
        )

    def request_check(self, **settings_changes: Any) -> bool:
        """ready|invalid -> uploaded with new settings (mapping, task, model...), to be checked again."""
        return move(
            self, {Status.READY, Status.INVALID}, status=Status.UPLOADED, failure_reason="", errors=[], error_count=0,
            check_attempts=0, check_sends=0, check_requested_at=timezone.now(), **settings_changes,
        )

    def record_check_sent(self, task_id: str) -> None:
        """A message for its check was (or, at commit, will be) sent: counted against the recovery's cap."""
        Dataset.objects.filter(pk=self.pk).update(
            task_id=task_id, check_sent_at=timezone.now(), check_sends=models.F("check_sends") + 1
        )
        self.refresh_from_db(fields=["task_id", "check_sent_at", "check_sends"])
