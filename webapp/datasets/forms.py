"""Browser forms for datasets: the upload, and the settings a re-check takes (mapping, task, split, model)."""

from __future__ import annotations

from typing import Any

from django import forms

from webapp.catalog.models import CatalogModel
from webapp.datasets.models import Dataset
from webapp.datasets.services import MAX_LENGTH_RANGE, MAX_VALIDATION_FRACTION
from webapp.datasets.shapes import EXPECTED_COLUMNS, TASKS

TASK_CHOICES = [("", "Infer from the columns")] + [(task, task) for task in TASKS]


class ProfileFields(forms.Form):
    task = forms.ChoiceField(choices=TASK_CHOICES, required=False)
    validation_fraction = forms.FloatField(
        required=False, min_value=0.0, max_value=MAX_VALIDATION_FRACTION, initial=0.1,
        help_text="Share of rows held out for validation (ignored when a validation file is given).",
    )
    profile_model = forms.ModelChoiceField(
        queryset=CatalogModel.objects.none(), required=False, empty_label="No model (no token lengths)",
        help_text="Base model whose tokenizer and chat template the profile uses.",
    )
    max_length = forms.IntegerField(min_value=MAX_LENGTH_RANGE[0], max_value=MAX_LENGTH_RANGE[1], initial=1024, required=False)

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["profile_model"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = CatalogModel.objects.visible_to(user).bases().order_by("name")


class UploadForm(ProfileFields):
    file = forms.FileField(help_text="CSV, TSV, JSON, JSONL, Parquet or plain text (.txt), UTF-8.")
    name = forms.CharField(max_length=200, required=False)
    validation_file = forms.FileField(required=False, help_text="Optional: a second file used as the validation split.")

    field_order = ["file", "name", "task", "validation_fraction", "validation_file", "profile_model", "max_length"]


class SettingsForm(ProfileFields):
    """The mapping step: which of the file's columns plays each expected column."""

    def __init__(self, *args: Any, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", "—")] + [(column, column) for column in dataset.columns]
        for expected in EXPECTED_COLUMNS:
            self.fields[f"map_{expected}"] = forms.ChoiceField(
                label=expected, choices=choices, required=False,
                initial=dataset.column_mapping.get(expected, ""),
            )

    def mapping(self) -> dict[str, str]:
        return {name: self.cleaned_data[f"map_{name}"] for name in EXPECTED_COLUMNS if self.cleaned_data.get(f"map_{name}")}

    def mapping_fields(self) -> list[forms.BoundField]:
        return [self[f"map_{name}"] for name in EXPECTED_COLUMNS]
