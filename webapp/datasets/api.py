"""API v1 endpoints for datasets."""

urlpatterns: list = []
