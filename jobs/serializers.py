"""JSON shapes of jobs for API v1 (API.md); input checks are jobs.services.plan_job's, not the serializer's."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.models import Job, JobEvent


class JobSerializer(serializers.ModelSerializer):
    base_model = serializers.UUIDField(source="base_model_id", read_only=True)
    result_model = serializers.UUIDField(source="result_model_id", read_only=True, allow_null=True)
    retry_of = serializers.UUIDField(source="retry_of_id", read_only=True, allow_null=True)
    datasets = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id", "status", "method", "task", "progress", "metrics", "result_model", "error",
            "created_at", "started_at", "finished_at",
            "kind", "base_model", "datasets", "hyperparameters", "estimate", "queue", "worker", "attempt",
            "failure_reason", "retry_of", "summary",
        ]

    def get_datasets(self, job: Job) -> list[str]:
        return [str(dataset.pk) for dataset in job.datasets.all()]

    def get_progress(self, job: Job) -> dict[str, Any]:
        progress = job.progress or {}
        return {
            "step": progress.get("step", 0),
            "total_steps": progress.get("total_steps", 0),
            "epoch": progress.get("epoch"),
            "loss": progress.get("loss"),
            "eta_seconds": progress.get("eta_seconds"),
            "learning_rate": progress.get("learning_rate"),
        }

    def get_error(self, job: Job) -> str | None:
        return job.error or None


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["id", "created_at", "step", "total_steps", "epoch", "loss", "learning_rate", "metrics", "message"]


class JobCreateSerializer(serializers.Serializer):
    """Shape only (types, required keys); whether the combination can work is decided by plan_job."""

    base_model = serializers.CharField()
    dataset = serializers.JSONField()
    method = serializers.CharField()
    task = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    hyperparameters = serializers.DictField(required=False, default=dict)
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
