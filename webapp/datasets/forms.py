"""Browser forms for datasets: the upload, and the settings a re-check takes (mapping, task, split, model)."""

from __future__ import annotations

from typing import Any

from django import forms

from webapp.catalog.models import CatalogModel
from webapp.datasets.layout import DELIMITER_NAMES, DELIMITERS, FORMAT_LABELS, FORMATS, ReadChoice, check_choice
from webapp.datasets.models import Dataset
from webapp.datasets.services import DEFAULT_MAX_LENGTH, MAX_LENGTH_RANGE, MAX_VALIDATION_FRACTION, model_positions
from webapp.datasets.shapes import EXPECTED_COLUMNS, TASKS
from webapp.lib.errors import LayercakeError

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
    # No fixed initial value: left empty it is 1024, or the profile model's positions when they are fewer.
    max_length = forms.IntegerField(
        min_value=MAX_LENGTH_RANGE[0], max_value=MAX_LENGTH_RANGE[1], required=False,
        widget=forms.NumberInput(attrs={"placeholder": f"{DEFAULT_MAX_LENGTH} or the model's limit"}),
        help_text="Never more than the profile model reads (its position embeddings).",
    )

    # How to read the file; each is detected from the content unless chosen here.
    file_format = forms.ChoiceField(
        choices=[("", "Detect from the content")] + [(fmt, FORMAT_LABELS[fmt]) for fmt in FORMATS], required=False,
        label="Read as",
    )
    delimiter = forms.ChoiceField(choices=[("", "Detect")] + [(name, name) for name in DELIMITERS], required=False)
    header = forms.ChoiceField(
        choices=[("", "Detect"), ("yes", "Yes: the first row names the columns"), ("no", "No: the first row is data")],
        required=False, label="Header row",
    )

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["profile_model"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = CatalogModel.objects.visible_to(user).bases().order_by("name")


    def clean(self) -> dict[str, Any]:
        values = super().clean() or {}
        try:
            self._read_choice = check_choice(
                values.get("file_format") or "", values.get("delimiter") or "", {"yes": True, "no": False}.get(values.get("header") or "")
            )
        except LayercakeError as problem:
            raise forms.ValidationError(problem.message) from None
        return values

    def read_choice(self) -> ReadChoice:
        return getattr(self, "_read_choice", ReadChoice())


class UploadForm(ProfileFields):
    file = forms.FileField(help_text="CSV, TSV, JSON, JSONL, Parquet or plain text (.txt), UTF-8.")
    name = forms.CharField(max_length=200, required=False)
    validation_file = forms.FileField(required=False, help_text="Optional: a second file used as the validation split.")

    field_order = ["file", "name", "task", "validation_fraction", "validation_file", "profile_model", "max_length"]


class SettingsForm(ProfileFields):
    """The mapping step: which of the file's columns plays each expected column."""

    def __init__(self, *args: Any, dataset: Dataset, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        chosen = ReadChoice.from_dict(dataset.read_choice)
        self.fields["file_format"].initial = chosen.fmt
        self.fields["delimiter"].initial = DELIMITER_NAMES.get(chosen.delimiter, "")
        self.fields["header"].initial = "" if chosen.header is None else "yes" if chosen.header else "no"
        positions = model_positions(dataset.profile_model)
        if positions is not None:  # offer nothing the profile model cannot read
            self.fields["max_length"].widget.attrs["max"] = str(min(positions, MAX_LENGTH_RANGE[1]))
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
