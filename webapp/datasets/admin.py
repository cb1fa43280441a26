from django.contrib import admin

from webapp.datasets.models import Dataset


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "status", "shape", "rows", "created_at"]
    list_filter = ["status", "shape"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["id", "source_file", "normalized", "profile", "errors", "status"]
