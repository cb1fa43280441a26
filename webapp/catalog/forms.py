"""The import form: a base model (zip or GGUF) or an external adapter zip on a chosen base."""

from __future__ import annotations

from typing import Any

from django import forms

from webapp.catalog.models import CatalogModel, Kind


class ImportForm(forms.Form):
    kind = forms.ChoiceField(choices=[(Kind.BASE, "Base model (zipped safetensors folder, or a .gguf file)"),
                                      (Kind.ADAPTER, "Adapter (zipped save_pretrained folder)")])
    file = forms.FileField()
    name = forms.CharField(max_length=200, required=False)
    base = forms.ModelChoiceField(queryset=CatalogModel.objects.none(), required=False,
                                  help_text="For an adapter: the base model it was trained on.")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base"].queryset = CatalogModel.objects.visible_to(user).bases()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("kind") == Kind.ADAPTER and not cleaned.get("base"):
            self.add_error("base", "Choose the base model this adapter was trained on.")
        return cleaned
