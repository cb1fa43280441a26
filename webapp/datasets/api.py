"""API v1 endpoints for datasets: upload, list, detail, delete, re-check with new settings."""

from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.api.pagination import LIST_PAGE_PARAMETERS, LinkHeaderPagination
from webapp.catalog.models import CatalogModel
from webapp.datasets import services
from webapp.datasets.models import Dataset
from webapp.datasets.serializers import DatasetSerializer, SettingsSerializer, UploadSerializer
from webapp.datasets.uploads import BodyLimits
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError


def chosen_model(user: Any, model_id: Any) -> CatalogModel | None:
    if not model_id:
        return None
    model = CatalogModel.objects.visible_to(user).filter(pk=model_id).first()
    if model is None:
        raise LayercakeError("Unknown base model for the token-length profile.")
    return model


class DatasetList(APIView):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]
    body_limits: BodyLimits | None = None

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body: the limit must see every chunk as it streams in.
        if request.method == "POST":
            self.body_limits = BodyLimits(request)
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(responses=DatasetSerializer(many=True), parameters=LIST_PAGE_PARAMETERS)
    def get(self, request: Request) -> Response:
        """Newest first, 100 a page (`?limit=` up to 1000, `?offset=`), like the job list."""
        datasets = Dataset.objects.for_user(request.user).select_related("profile_model")
        paginator = LinkHeaderPagination()
        page = paginator.paginate_queryset(datasets, request, view=self)
        return paginator.get_paginated_response(DatasetSerializer(page, many=True).data)

    @extend_schema(request=UploadSerializer, responses={201: DatasetSerializer})
    def post(self, request: Request) -> Response:
        assert self.body_limits is not None
        self.body_limits.check_declared(request.user)  # authenticated now, and the body is still unread
        upload = request.FILES.get("file")
        self.body_limits.check_streamed()
        fields = UploadSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        values = fields.validated_data
        dataset = services.ingest(
            upload,
            request.user,
            name=values.get("name", ""),
            task=values.get("task", ""),
            validation_upload=request.FILES.get("validation_file"),
            validation_fraction=values.get("validation_fraction", 0.0),
            profile_model=chosen_model(request.user, values.get("profile_model")),
            max_length=values.get("max_length"),
            read_choice=values.get("read_choice"),
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetail(APIView):
    serializer_class = DatasetSerializer

    @extend_schema(responses=DatasetSerializer)
    def get(self, request: Request, pk: Any) -> Response:
        return Response(DatasetSerializer(owned_or_404(Dataset, request.user, pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: Any) -> Response:
        services.delete_dataset(owned_or_404(Dataset, request.user, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetCheckAgain(APIView):
    """New settings, then the dataset is checked again (its path keeps the name it was published with)."""

    serializer_class = DatasetSerializer
    parser_classes = [JSONParser, FormParser]

    @extend_schema(request=SettingsSerializer, responses={202: DatasetSerializer})
    def post(self, request: Request, pk: Any) -> Response:
        dataset = owned_or_404(Dataset, request.user, pk)
        fields = SettingsSerializer(data=request.data)
        fields.is_valid(raise_exception=True)
        values = fields.validated_data
        model: Any = None
        if "profile_model" in values:
            model = chosen_model(request.user, values["profile_model"]) or ""
        services.change_settings(
            dataset,
            mapping=values.get("mapping"),
            task=values.get("task"),
            validation_fraction=values.get("validation_fraction"),
            profile_model=model,
            max_length=values.get("max_length"),
            read_choice=values.get("read_choice"),
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)


class DatasetRestore(APIView):
    serializer_class = DatasetSerializer

    @extend_schema(request=None, responses={202: DatasetSerializer})
    def post(self, request: Request, pk: Any) -> Response:
        """Check again with the mapping and task of the last check that made the dataset ready."""
        dataset = services.restore_last_ready_settings(owned_or_404(Dataset, request.user, pk))
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)


class DatasetDeduplicate(APIView):
    serializer_class = DatasetSerializer

    @extend_schema(request=None, responses={201: DatasetSerializer})
    def post(self, request: Request, pk: Any) -> Response:
        """A new dataset without the exact duplicates of this ready one (which stays as it is)."""
        copy = services.drop_exact_duplicates(owned_or_404(Dataset, request.user, pk))
        return Response(DatasetSerializer(copy).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("datasets/", DatasetList.as_view(), name="api-datasets"),
    path("datasets/<uuid:pk>/", DatasetDetail.as_view(), name="api-dataset"),
    path("datasets/<uuid:pk>/revalidate/", DatasetCheckAgain.as_view(), name="api-dataset-check-again"),
    path("datasets/<uuid:pk>/restore/", DatasetRestore.as_view(), name="api-dataset-restore"),
    path("datasets/<uuid:pk>/deduplicate/", DatasetDeduplicate.as_view(), name="api-dataset-deduplicate"),
]
