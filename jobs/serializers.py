"""JSON shapes of jobs for API v1 (API.md); input checks are jobs.services.plan_job's, not the serializer's."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import Job, JobEvent, Priority
from jobs.training.registry import METHODS, TASKS
from jobs.training.spec import HYPERPARAMETERS, PRESETS


def _documented_field(name: str, knob: Any) -> serializers.Field:
    """The OpenAPI description of one hyperparameter, from its one definition (jobs.training.spec.knob)."""
    types = [kind for kind in knob["types"] if kind is not type(None)]
    bounds: dict[str, Any] = dict(zip(("min_value", "max_value"), knob["range"], strict=True)) if knob["range"] else {}
    common: dict[str, Any] = {"required": False, "help_text": knob["help"], "allow_null": type(None) in knob["types"]}
    if name == "preset":
        return serializers.ChoiceField(choices=list(PRESETS), **common)
    if types == [bool]:
        return serializers.BooleanField(**common)
    if types == [int]:
        return serializers.IntegerField(**bounds, **common)
    if float in types:
        return serializers.FloatField(**bounds, **common)
    if list in types:
        return serializers.ListField(child=serializers.CharField(), **common)
    return serializers.CharField(**common)


HyperparametersSchema = type(
    "Hyperparameters",
    (serializers.Serializer,),
    {name: _documented_field(name, knob) for name, knob in HYPERPARAMETERS.items()},
)


@extend_schema_field(HyperparametersSchema)
class HyperparametersField(serializers.DictField):
    """Any JSON object on the way in (plan_job names every unknown key, wrong type or value out of range at once);
    documented in the OpenAPI schema knob by knob."""


class JobSerializer(serializers.ModelSerializer):
    base_model = serializers.UUIDField(source="base_model_id", read_only=True, allow_null=True)  # null: deleted since
    result_model = serializers.UUIDField(source="result_model_id", read_only=True, allow_null=True)
    retry_of = serializers.UUIDField(source="retry_of_id", read_only=True, allow_null=True)
    datasets = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    priority = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField(help_text="While waiting: jobs ahead of it in its queue, jobs running.")

    class Meta:
        model = Job
        fields = [
            "id", "status", "method", "task", "progress", "metrics", "result_model", "error",
            "created_at", "started_at", "finished_at",
            "kind", "base_model", "datasets", "hyperparameters", "estimate", "queue", "worker", "attempt",
            "failure_reason", "retry_of", "summary", "priority", "queue_position",
        ]

    def get_datasets(self, job: Job) -> list[str]:
        return [str(dataset.pk) for dataset in job.datasets.all()]

    def get_progress(self, job: Job) -> dict[str, Any]:
        progress = job.progress or {}
        payload = {
            "step": progress.get("step", 0),
            "total_steps": progress.get("total_steps", 0),
            "epoch": progress.get("epoch"),
            "loss": progress.get("loss"),
            "eta_seconds": progress.get("eta_seconds"),
            "learning_rate": progress.get("learning_rate"),
        }
        if progress.get("phase"):
            # Added once a worker runs it: the phase (loading, evaluating_base, training, evaluating, saving,
            # registering) and, while evaluating, the batches done of all; eta_seconds covers every phase left.
            payload.update(
                phase=progress["phase"], phase_done=progress.get("phase_done"), phase_total=progress.get("phase_total")
            )
        return payload

    def get_error(self, job: Job) -> str | None:
        return job.error or None

    def get_priority(self, job: Job) -> str:
        return Priority(job.priority).name.lower()

    def get_queue_position(self, job: Job) -> dict[str, int] | None:
        from jobs.services import queue_position

        if not job.is_waiting:
            return None
        position = queue_position(job.queue, job)
        return {"ahead": position.ahead, "running": position.running, "workers": position.workers}


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "created_at", "step", "total_steps", "epoch", "loss", "learning_rate", "metrics", "message"]


class JobCreateSerializer(serializers.Serializer):
    """Shape only (types, required keys); whether the combination can work is decided by plan_job."""

    base_model = serializers.CharField()
    dataset = serializers.JSONField()
    method = serializers.CharField(help_text=f"One of {', '.join(METHODS)}.")
    task = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text=f"One of {', '.join(TASKS)}; inferred when absent."
    )
    hyperparameters = HyperparametersField(required=False, default=dict)
    priority = serializers.ChoiceField(
        choices=[name.lower() for name in Priority.names], required=False, default="normal",
        help_text="Within its queue a job starts after waiting jobs of higher priority, then in submission order.",
    )
    allow_shorter_max_length = serializers.BooleanField(
        required=False, default=False, help_text="When the job does not fit any worker, may max_length be shortened?"
    )

    def validate_dataset(self, value: Any) -> list[str]:
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(item, str) for item in values):
            raise serializers.ValidationError("dataset must be a dataset id or a list of dataset ids.")
        return values

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({key: "Unknown field." for key in sorted(unknown)})
        return attrs
