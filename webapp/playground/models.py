"""A playground run: one input, answered by one or more catalog models side by side on an inference worker."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from webapp.lib.states import move


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


FINAL_STATES = {Status.DONE, Status.FAILED}


class PlaygroundRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="playground_runs")
    prompt = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_reason = models.TextField(blank=True)
    # One entry per model, in the order shown: {"model", "name", "kind", "status", "mode", "seconds", "text" | "labels" | "tokens"}.
    answers = models.JSONField(default=list)
    # How generative models answer (webapp.playground.answering.GenerationSettings); empty: the defaults.
    generation = models.JSONField(default=dict, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    sends = models.PositiveSmallIntegerField(default=0, help_text="Messages sent for it: the recovery's cap.")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When its last message was sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"playground run {self.id}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATES

    # Transitions by a conditional update (webapp.lib.states): two deliveries of one message cannot both start it.

    def start(self, worker: str) -> bool:
        return move(self, {Status.QUEUED}, status=Status.RUNNING, worker=worker, started_at=timezone.now())

    def finish(self) -> bool:
        return move(self, {Status.RUNNING}, status=Status.DONE, answers=self.answers, finished_at=timezone.now())

    def fail(self, reason: str) -> bool:
        return move(self, {Status.QUEUED, Status.RUNNING}, status=Status.FAILED, failure_reason=reason,
                          answers=self.answers, finished_at=timezone.now())

    def record_sent(self, task_id: str) -> None:
        PlaygroundRun.objects.filter(pk=self.pk).update(task_id=task_id, sent_at=timezone.now(), sends=models.F("sends") + 1)
        self.refresh_from_db(fields=["task_id", "sent_at", "sends"])

    def save_answers(self) -> None:
        PlaygroundRun.objects.filter(pk=self.pk).update(answers=self.answers)
