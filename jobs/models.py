"""Fine-tuning jobs: an explicit state machine (the database is the source of truth) and their progress."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F
from django.utils import timezone

from webapp.lib.states import move


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINAL_STATES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
WAITING_STATES = frozenset({Status.QUEUED, Status.RETRYING})
# Ended without a result: their checkpoints are kept LAYERCAKE_CHECKPOINT_RETENTION_HOURS, then deleted (jobs.retention).
# A succeeded job deletes its own at once (jobs.runner.cleanup).
ENDED_WITHOUT_RESULT = frozenset({Status.FAILED, Status.CANCELLED})


class Kind(models.TextChoices):
    TRAIN = "train", "Fine-tune"
    MERGE = "merge", "Merge adapter"
    EXPORT = "export", "Export to GGUF"


class Priority(models.IntegerChoices):
    """Within a queue, higher priority first; the same priority in submission order."""

    LOW = -1, "Low"
    NORMAL = 0, "Normal"
    HIGH = 1, "High"


# The order in which the workers of one queue take waiting jobs (jobs.services.claim_next_job).
QUEUE_ORDER = ("-priority", "created_at", "id")


class FailureReason(models.TextChoices):
    """Why a job ended badly (status says where it is; this says why)."""

    NONE = "", "—"
    INVALID = "invalid", "The spec cannot work"
    ERROR = "error", "Training raised an error"
    WORKER_LOST = "worker_lost", "Its worker stopped answering too often"
    TIME_LIMIT = "time_limit", "It ran past its time limit"


class JobQuerySet(models.QuerySet["Job"]):
    def for_user(self, user: Any) -> JobQuerySet:
        return self.filter(owner=user)

    def active(self) -> JobQuerySet:
        return self.exclude(status__in=FINAL_STATES)

    def running(self) -> JobQuerySet:
        return self.filter(status=Status.RUNNING)

    def waiting(self) -> JobQuerySet:
        return self.filter(status__in=WAITING_STATES)

    def in_queue(self, queue: str) -> JobQuerySet:
        """Waiting jobs sent to `queue`, in the order its workers take them.

        A job never sent (`manage.py finetune` runs its own) has no `enqueued_at` and is no worker's to take.
        """
        return self.waiting().filter(queue=queue, enqueued_at__isnull=False).order_by(*QUEUE_ORDER)

    def ahead_of(self, job: Job) -> JobQuerySet:
        """Waiting jobs of the same queue that a worker takes before `job`."""
        before = (
            models.Q(priority__gt=job.priority)
            | models.Q(priority=job.priority, created_at__lt=job.created_at)
            | models.Q(priority=job.priority, created_at=job.created_at, id__lt=job.id)
        )
        return self.in_queue(job.queue).filter(before).exclude(pk=job.pk)

    def finished_exports(self) -> JobQuerySet:
        """GGUF export jobs that ended with a proven file or a refusal, newest first (cancelled ones left out)."""
        return self.filter(kind=Kind.EXPORT, status__in=(Status.SUCCEEDED, Status.FAILED)).order_by("-finished_at")

    def stale(self, seconds: int) -> JobQuerySet:
        """Running jobs whose worker has not heartbeaten for `seconds`."""
        return self.running().filter(heartbeat_at__lt=timezone.now() - timedelta(seconds=seconds))

    def may_hold_checkpoints(self) -> JobQuerySet:
        """Training jobs that ran and whose checkpoints nothing deleted yet (a succeeded job deletes its own)."""
        return self.filter(kind=Kind.TRAIN, started_at__isnull=False, checkpoints_deleted_at__isnull=True).exclude(
            status=Status.SUCCEEDED
        )

    def checkpoints_expired(self, ended_before: datetime) -> JobQuerySet:
        """Jobs that ended failed or cancelled before `ended_before` and may still hold checkpoints, oldest first."""
        return (
            self.may_hold_checkpoints()
            .filter(status__in=ENDED_WITHOUT_RESULT, finished_at__lt=ended_before)
            .order_by("finished_at", "id")
        )


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TRAIN)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.CharField(max_length=16, choices=FailureReason.choices, blank=True, default="")
    error = models.TextField(blank=True)

    # Empty once its model was deleted: a finished job keeps its history (catalog.services.delete_model refuses
    # to delete a model while a job that is not finished uses it).
    base_model = models.ForeignKey(
        "catalog.CatalogModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    datasets = models.ManyToManyField("datasets.Dataset", related_name="jobs", blank=True)
    method = models.CharField(max_length=32)
    task = models.CharField(max_length=32)
    requested_hyperparameters = models.JSONField(default=dict, blank=True, help_text="As the user gave them.")
    hyperparameters = models.JSONField(default=dict, blank=True, help_text="Resolved from the preset.")
    estimate = models.JSONField(default=dict, blank=True, help_text="Memory, parameters and time estimated at submit.")
    queue = models.CharField(max_length=32, default="gpu")
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    submit_token = models.CharField(
        max_length=200, blank=True, default="", editable=False,
        help_text="The review page's token (or the API's Idempotency-Key): a second submit with it finds this job.",
    )

    task_id = models.CharField(max_length=64, blank=True, help_text="The Celery task id of the last delivery.")
    worker = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    cancel_requested = models.BooleanField(default=False)

    progress = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    result_model = models.ForeignKey(
        "catalog.CatalogModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="produced_by_jobs"
    )

    created_at = models.DateTimeField(auto_now_add=True)
    enqueued_at = models.DateTimeField(null=True, blank=True, help_text="When its task was last sent.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    checkpoints_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the retention rule deleted the checkpoints of this failed or cancelled job."
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["queue", "status", "-priority", "created_at"], name="job_queue_order"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "submit_token"], condition=~models.Q(submit_token=""), name="job_submit_token_once_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_method_display()} of {self.base_model_id} ({self.status})"

    def get_method_display(self) -> str:
        return self.method.replace("_", " ")

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    @property
    def is_waiting(self) -> bool:
        return self.status in WAITING_STATES

    @property
    def duration(self) -> timedelta | None:
        """Time spent running: until it ended, or until now while it runs."""
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def storage_prefix(self) -> str:
        return f"jobs/{self.id}"

    @property
    def checkpoints_kept_until(self) -> datetime | None:
        """When the retention rule deletes the checkpoints this failed or cancelled training job left; None for a job
        that has none waiting (still running, succeeded, never ran, a merge or export, or already deleted)."""
        if (
            self.kind != Kind.TRAIN
            or self.status not in ENDED_WITHOUT_RESULT
            or self.started_at is None
            or self.finished_at is None
            or self.checkpoints_deleted_at is not None
        ):
            return None
        return self.finished_at + timedelta(hours=settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS)

    # Transitions. Each moves only from the expected states by one conditional UPDATE (webapp.lib.states),
    # so two workers (or a worker and the stale-job check) cannot both win.

    def start(self, worker: str) -> bool:
        """A worker takes the job: queued or retrying -> running."""
        now = timezone.now()
        return move(
            self,
            WAITING_STATES,
            status=Status.RUNNING,
            worker=worker,
            started_at=self.started_at or now,
            heartbeat_at=now,
            attempt=F("attempt") + 1,
        )

    def succeed(self, result_model: Any, metrics: dict[str, Any], summary: dict[str, Any]) -> bool:
        return move(
            self,
            {Status.RUNNING},
            status=Status.SUCCEEDED,
            result_model=result_model,
            metrics=metrics,
            summary=summary,
            finished_at=timezone.now(),
            # A resumed job carries its requeue reason in `error`; a success clears it.
            error="",
            failure_reason="",
        )

    def fail(self, error: str, reason: str = FailureReason.ERROR, evidence: dict[str, Any] | None = None) -> bool:
        """`evidence` (a refused merge's comparison, say) is kept in the job's metrics for the user to see."""
        changes: dict[str, Any] = {"metrics": evidence} if evidence else {}
        return move(
            self,
            {Status.QUEUED, Status.RETRYING, Status.RUNNING},
            status=Status.FAILED,
            error=error[:10_000],
            failure_reason=reason,
            finished_at=timezone.now(),
            **changes,
        )

    def cancel(self) -> bool:
        """Queued jobs end at once; a running job is asked to stop and ends at its next step."""
        if move(self, WAITING_STATES, status=Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()):
            return True
        return move(self, {Status.RUNNING}, cancel_requested=True)

    def mark_cancelled(self) -> bool:
        """The worker honoured a cancel request: running -> cancelled."""
        return move(self, {Status.RUNNING}, status=Status.CANCELLED, finished_at=timezone.now())

    def requeue(self, reason: str) -> bool:
        """Its worker vanished: running -> retrying, to resume from its last checkpoint."""
        return move(self, {Status.RUNNING}, status=Status.RETRYING, error=reason[:10_000], worker="")

    def mark_checkpoints_deleted(self) -> bool:
        """The retention rule deleted the checkpoints; True for the one check that records it (two may overlap)."""
        now = timezone.now()
        marked = Job.objects.filter(pk=self.pk, checkpoints_deleted_at__isnull=True).update(checkpoints_deleted_at=now) == 1
        if marked:
            self.checkpoints_deleted_at = now
        return marked

    def heartbeat(self) -> bool:
        return Job.objects.filter(pk=self.pk, status=Status.RUNNING).update(heartbeat_at=timezone.now()) == 1

    def record_task_id(self, task_id: str) -> None:
        Job.objects.filter(pk=self.pk).update(task_id=task_id)
        self.task_id = task_id


class JobEvent(models.Model):
    """One recorded progress point (throttled by the reporter: not a row per step)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    epoch = models.FloatField(null=True, blank=True)
    loss = models.FloatField(null=True, blank=True)
    learning_rate = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "id"])]

    def __str__(self) -> str:
        return f"step {self.step}/{self.total_steps} of {self.job_id}"


def gpu_queue(processes: int) -> str:
    """The queue of a job whose run needs `processes` GPUs of one worker: `gpu`, then `gpu-x2`, `gpu-x4`...

    A worker with N GPUs on the `gpu` queue consumes gpu-x2 ... gpu-xN as well (jobs.worker_registry), so a job
    waits for a worker that can host it.
    """
    return "gpu" if processes <= 1 else f"gpu-x{processes}"


class Worker(models.Model):
    """A Celery worker as it last described itself (registered at start, then heartbeating)."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    devices = models.JSONField(default=list, help_text='[{"kind": "cuda"|"cpu", "name", "memory_bytes"}]')
    current_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    def is_online(self, within_seconds: int) -> bool:
        return self.stopped_at is None and self.last_heartbeat >= timezone.now() - timedelta(seconds=within_seconds)

    @property
    def memory_bytes(self) -> int:
        return max((device.get("memory_bytes", 0) for device in self.devices), default=0)

    @property
    def has_gpu(self) -> bool:
        return any(device.get("kind") == "cuda" for device in self.devices)

    @property
    def gpu_count(self) -> int:
        return sum(1 for device in self.devices if device.get("kind") == "cuda")

    def process_slots(self, device: str) -> int:
        """How many processes of one run this worker can host: a GPU each on CUDA, a core each on the CPU."""
        if device == "cuda":
            return self.gpu_count
        # Registrations from before cores were recorded count as one.
        return max((int(d.get("cores", 1)) for d in self.devices if d.get("kind") == "cpu"), default=0)
