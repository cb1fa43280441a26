"""API v1 endpoints for the model catalog."""

from __future__ import annotations

from rest_framework import generics

from webapp.catalog.models import CatalogModel
from webapp.catalog.serializers import CatalogModelDetailSerializer, CatalogModelSerializer
from webapp.lib.access import owned_or_404


class ModelList(generics.ListAPIView):
    serializer_class = CatalogModelSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return CatalogModel.objects.visible_to(self.request.user).order_by("-created_at")


class ModelDetail(generics.RetrieveAPIView):
    serializer_class = CatalogModelDetailSerializer

    def get_object(self) -> CatalogModel:
        return owned_or_404(CatalogModel.objects.select_related("parent"), self.request.user, self.kwargs["pk"])
