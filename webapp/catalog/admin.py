from django.contrib import admin

from webapp.catalog.models import CatalogModel


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "family", "parameter_count", "owner", "created_at")
    list_filter = ("kind", "family")
    search_fields = ("name", "source")
    readonly_fields = ("id", "files", "storage_prefix", "created_at")
