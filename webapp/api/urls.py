"""API v1: every app's endpoints under /api/v1/, plus the OpenAPI schema."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("webapp.catalog.api_urls")),
    path("", include("webapp.datasets.api")),
    path("", include("jobs.api_urls")),
]
