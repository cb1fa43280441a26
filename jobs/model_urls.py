"""The jobs a model's page starts, under /models/ beside the catalog's pages."""

from django.urls import path

from jobs import views

app_name = "model_jobs"
urlpatterns = [
    path("<uuid:pk>/merge/", views.merge_model, name="merge"),
    path("<uuid:pk>/export/", views.export_model, name="export"),
]
