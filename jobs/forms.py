"""The job wizard's form: choices narrow as the user picks; the checks themselves are jobs.services.plan_job's."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from jobs import services
from jobs.models import Priority
from jobs.services import JobPlan
from jobs.training import registry
from jobs.training.spec import HYPERPARAMETERS
from webapp.catalog.models import CatalogModel
from webapp.datasets.models import Dataset
from webapp.lib.errors import LayercakeError

PRESET_CHOICES = [
    ("quick", "Quick: a first result in minutes"),
    ("balanced", "Balanced: the default"),
    ("thorough", "Thorough: more epochs, longer sequences"),
]
# Advanced fields, all optional: empty means "the preset decides". Which knobs appear, and their help, is the
# hyperparameter's own definition (jobs.training.spec.Hyperparameters).
INT_FIELDS = [name for name, knob in HYPERPARAMETERS.items() if knob["form"] == "int"]
FLOAT_FIELDS = [name for name, knob in HYPERPARAMETERS.items() if knob["form"] == "float"]


class JobForm(forms.Form):
    task = forms.ChoiceField(choices=[(task.name, task.label) for task in registry.TASK_TABLE.values()])
    base_model = forms.ChoiceField(label="Base model")
    datasets = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, help_text="Several for multi-task training.")
    method = forms.ChoiceField(choices=[(method, method) for method in registry.METHODS], widget=forms.RadioSelect)
    preset = forms.ChoiceField(choices=PRESET_CHOICES, initial="balanced")
    priority = forms.TypedChoiceField(
        choices=Priority.choices, coerce=int, required=False, empty_value=None, initial=Priority.NORMAL,
        help_text="Within its queue a job starts after every waiting job of higher priority, then in submission order.",
    )
    prompt_init_text = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Prompt tuning starts from this natural-language prompt.",
    )
    packing = forms.ChoiceField(
        required=False, choices=[("", "preset default"), ("true", "on"), ("false", "off")],
        help_text="Pack several short rows into one sequence so padding does not eat the compute.",
    )
    objective = forms.ChoiceField(
        required=False, choices=[("", "preset default (DPO)"), *registry.OBJECTIVES.items()],
        help_text=HYPERPARAMETERS["objective"]["help"],
    )
    target_modules = forms.CharField(required=False, help_text="LoRA target modules, comma-separated (default: per architecture).")
    allow_shorter_max_length = forms.BooleanField(
        required=False, label="Shorten max_length if needed",
        help_text="If the job does not fit a worker even with checkpointing and a smaller micro-batch, train on shorter sequences.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.plan: JobPlan | None = None
        self.quiet = False
        for name in INT_FIELDS:
            self.fields[name] = forms.IntegerField(
                required=False, help_text=HYPERPARAMETERS[name]["help"], widget=forms.NumberInput(attrs={"placeholder": "preset"})
            )
        for name in FLOAT_FIELDS:
            self.fields[name] = forms.FloatField(
                required=False, help_text=HYPERPARAMETERS[name]["help"],
                widget=forms.NumberInput(attrs={"placeholder": "preset", "step": "any"}),
            )
        task = self.data.get("task") or self.initial.get("task") or "sft"
        models = CatalogModel.objects.visible_to(user).order_by("name")
        fitting = [model for model in models if task in model.tasks]
        cast(forms.ChoiceField, self.fields["base_model"]).choices = [(str(m.id), f"{m.name} ({m.get_kind_display().lower()})") for m in fitting]
        ready = Dataset.objects.for_user(user).ready().order_by("-created_at")
        cast(forms.ChoiceField, self.fields["datasets"]).choices = [(str(d.id), f"{d.name} · {d.rows} rows") for d in ready if d.task == task]
        base = next((m for m in fitting if str(m.id) == self.data.get("base_model")), fitting[0] if fitting else None)
        self.method_reasons = services.task_methods(base, task) if base else {m: "pick a base model first" for m in registry.METHODS}

    def method_options(self) -> list[dict[str, Any]]:
        """Each method with its one-line summary and, when it cannot run, the reason."""
        chosen = self.data.get("method", "")
        return [
            {
                "value": method, "summary": registry.method(method).summary, "reason": self.method_reasons.get(method, ""),
                "checked": method == chosen,
            }
            for method in registry.METHOD_LADDER
        ]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [
            self[name]
            for name in FLOAT_FIELDS + INT_FIELDS + ["packing", "objective", "target_modules", "allow_shorter_max_length"]
        ]

    def hyperparameters(self) -> dict[str, Any]:
        data = self.cleaned_data
        given: dict[str, Any] = {"preset": data["preset"]}
        for name in INT_FIELDS + FLOAT_FIELDS + ["prompt_init_text"]:
            if data.get(name) not in (None, ""):
                given[name] = data[name]
        if data.get("objective") and data.get("task") == "preference":
            given["objective"] = data["objective"]
        if data.get("packing"):
            given["packing"] = data["packing"] == "true"
        if data.get("target_modules"):
            given["target_modules"] = [name.strip() for name in data["target_modules"].split(",") if name.strip()]
        return given

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            self.plan = services.plan_job(
                self.user, data["base_model"], data["datasets"], data["method"], data["task"], self.hyperparameters(),
                allow_shorter_max_length=bool(data.get("allow_shorter_max_length")),
            )
        except LayercakeError as error:
            raise forms.ValidationError(error.message) from error
        return data
