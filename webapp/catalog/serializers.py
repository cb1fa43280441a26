"""JSON shapes of catalog models for API v1 (fields per API.md; extra fields are additions)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.catalog.downloads import gguf_exports
from webapp.catalog.models import CatalogModel
from webapp.catalog.presenting import producing_job_id


class CatalogModelSerializer(serializers.ModelSerializer):
    # A field named like Field.parent: legal DRF, which the stubs cannot tell apart.
    parent = serializers.PrimaryKeyRelatedField(read_only=True)  # type: ignore[assignment,var-annotated]
    shared = serializers.BooleanField(source="is_shared", read_only=True)
    tasks = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="What it can be fine-tuned for or serves (computed from its architecture; an adapter: its own task).",
    )

    class Meta:
        model = CatalogModel
        fields = [
            "id", "name", "kind", "parent", "tasks", "size_bytes", "created_at",
            "family", "architecture", "parameter_count", "dtype", "has_chat_template", "licence", "source", "shared",
        ]


class CatalogModelDetailSerializer(CatalogModelSerializer):
    lineage = serializers.SerializerMethodField()
    job = serializers.SerializerMethodField()
    gguf_exports = serializers.SerializerMethodField()

    class Meta(CatalogModelSerializer.Meta):
        fields = CatalogModelSerializer.Meta.fields + ["lineage", "metrics", "job", "files", "deployment", "gguf_exports"]

    def get_lineage(self, model: CatalogModel) -> list[str]:
        return [str(ancestor.id) for ancestor in model.lineage()]

    def get_job(self, model: CatalogModel) -> str | None:
        return producing_job_id(model)

    def get_gguf_exports(self, model: CatalogModel) -> list[dict[str, Any]]:
        """Per GGUF type, the newest export: offered (proof passed) with its file, or refused; see docs/architecture.md."""
        return [
            {"type": export["type"], "offered": export["offered"], "job": str(export["job"].pk),
             "file": export["file"] if export["offered"] else None, "passed": bool((export["proof"] or {}).get("passed")),
             "max_abs_logit_diff": (export["proof"] or {}).get("max_abs_logit_diff"), "bound": (export["proof"] or {}).get("bound")}
            for export in gguf_exports(model)
        ]
