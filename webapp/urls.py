"""Top-level URLs: pages per app, the JSON API under /api/v1/, the admin."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import include, path

from webapp.api.errors import json_not_found, json_server_error
from webapp.lib.pages import not_found_page, server_error_page


def home(request: HttpRequest) -> HttpResponse:
    return redirect("catalog:list")


urlpatterns = [
    path("", home, name="home"),
    path("", include("webapp.accounts.urls")),
    path("models/", include("webapp.catalog.urls")),
    path("models/", include("jobs.model_urls")),
    path("playground/", include("webapp.playground.urls")),
    path("datasets/", include("webapp.datasets.urls")),
    path("jobs/", include("jobs.urls")),
    path("workers/", include("jobs.worker_urls")),
    path("api/v1/", include("webapp.api.urls")),
    path("admin/", admin.site.urls),
]


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    return not_found_page(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_server_error(request)
    return server_error_page(request)
