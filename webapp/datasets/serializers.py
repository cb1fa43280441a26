"""JSON shapes of datasets for API v1 (the fields of API.md, plus additions)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.datasets.layout import DELIMITERS, FORMATS, check_choice
from webapp.datasets.models import Dataset
from webapp.datasets.services import MAX_LENGTH_RANGE, MAX_VALIDATION_FRACTION
from webapp.datasets.shapes import EXPECTED_COLUMNS, TASKS
from webapp.lib.errors import LayercakeError


class DatasetSerializer(serializers.ModelSerializer):
    # API.md names the field `errors`; DRF moves declared fields off the class, so .errors still works.
    errors = serializers.SerializerMethodField()  # type: ignore[assignment]
    normalized_files = serializers.SerializerMethodField()
    profile_model = serializers.PrimaryKeyRelatedField(read_only=True)  # type: ignore[var-annotated]
    derived_from = serializers.PrimaryKeyRelatedField(read_only=True)  # type: ignore[var-annotated]

    class Meta:
        model = Dataset
        fields = [
            "id", "name", "status", "task", "rows", "columns", "errors", "profile", "created_at",
            "shape", "declared_task", "error_count", "failure_reason", "file_format", "original_filename",
            "size_bytes", "validation_fraction", "validation_original_filename", "column_mapping",
            "profile_model", "max_length", "preview", "normalized_files", "checked_at", "derived_from",
            "last_ready_settings",
            "detected", "read_choice",
        ]

    def get_errors(self, dataset: Dataset) -> list[dict[str, Any]]:
        return dataset.api_errors()

    def get_normalized_files(self, dataset: Dataset) -> dict[str, str]:
        return dataset.normalized_files()


class UploadSerializer(serializers.Serializer):
    """The multipart fields of POST /api/v1/datasets/ besides `file`."""

    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    task = serializers.ChoiceField(choices=[("", "infer")] + [(t, t) for t in TASKS], required=False, allow_blank=True)
    validation_fraction = serializers.FloatField(required=False, min_value=0.0, max_value=MAX_VALIDATION_FRACTION)
    max_length = serializers.IntegerField(required=False, min_value=MAX_LENGTH_RANGE[0], max_value=MAX_LENGTH_RANGE[1])
    profile_model = serializers.UUIDField(required=False, allow_null=True)
    # How to read the file, each detected from the content when absent.
    file_format = serializers.ChoiceField(choices=[("", "detect")] + [(f, f) for f in FORMATS], required=False, allow_blank=True)
    delimiter = serializers.ChoiceField(choices=[("", "detect")] + [(d, d) for d in DELIMITERS], required=False, allow_blank=True)
    header = serializers.BooleanField(required=False, allow_null=True, default=None)

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        """The three reading fields become one `read_choice`, present only when one of them was sent."""
        sent = {key: values.pop(key) for key in ("file_format", "delimiter", "header") if key in values}
        if any(key in self.initial_data for key in sent):
            try:
                values["read_choice"] = check_choice(sent.get("file_format", ""), sent.get("delimiter", ""), sent.get("header"))
            except LayercakeError as problem:
                raise serializers.ValidationError(problem.message) from None
        return values


class SettingsSerializer(UploadSerializer):
    """POST /api/v1/datasets/{id}/revalidate/: what to change before checking again."""

    mapping = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=200), required=False)

    def validate_mapping(self, mapping: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(mapping) - set(EXPECTED_COLUMNS))
        if unknown:
            raise serializers.ValidationError(f"unknown target column `{unknown[0]}`; expected ones are {', '.join(EXPECTED_COLUMNS)}")
        return mapping
