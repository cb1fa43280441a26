"""API v1 endpoints for the model catalog: list, detail, rename, delete, downloads, deployment profile, import.

Merge and GGUF export start jobs: their endpoints are in jobs.api.
"""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.catalog import deployment, downloads, importing, services
from webapp.catalog.forms import ImportForm
from webapp.catalog.models import CatalogModel
from webapp.catalog.serializers import CatalogModelDetailSerializer, CatalogModelSerializer
from webapp.datasets.uploads import BodyLimits
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError, RowError


class ModelList(generics.ListAPIView):
    serializer_class = CatalogModelSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return CatalogModel.objects.visible_to(self.request.user).order_by("-created_at")


RENAMABLE_FIELDS = {"name"}


class ModelDetail(generics.RetrieveAPIView):
    serializer_class = CatalogModelDetailSerializer

    def get_object(self) -> CatalogModel:
        return owned_or_404(CatalogModel.objects.select_related("parent"), self.request.user, self.kwargs["pk"])

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: str) -> Response:
        """Delete one of your models and its files. 409, naming them, while an unfinished job or a derived model
        depends on it; shared bases and others' models are 404. Finished jobs keep their history."""
        services.delete_model(owned_or_404(CatalogModel.objects.owned_by(request.user), request.user, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request={"application/json": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 200}},
                                      "required": ["name"]}},
        responses={200: CatalogModelDetailSerializer},
    )
    def patch(self, request: Request, pk: str) -> Response:
        """Rename one of your models: `{"name": "..."}`. Shared bases and others' models are 404."""
        model = owned_or_404(CatalogModel.objects.owned_by(request.user).select_related("parent"), request.user, pk)
        if not isinstance(request.data, dict) or "name" not in request.data:
            raise LayercakeError("Send the new name as JSON: {\"name\": \"...\"}.", [RowError(None, "name", "missing")])
        unknown = sorted(set(request.data) - RENAMABLE_FIELDS)
        if unknown:
            raise LayercakeError(
                f"Only the name of a model can be changed; not {', '.join(unknown)}.",
                [RowError(None, key, "cannot be changed") for key in unknown],
            )
        services.rename_model(model, request.data["name"])
        return Response(CatalogModelDetailSerializer(model).data)


class ModelDownload(APIView):
    @extend_schema(responses={(200, "application/zip"): bytes})
    def get(self, request: Request, pk: str) -> StreamingHttpResponse:
        """The model as a zip in the save_pretrained layout, streamed."""
        return downloads.zip_response(owned_or_404(CatalogModel, request.user, pk), downloads.site_root(request))


class ModelFileDownload(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, pk: str, name: str) -> StreamingHttpResponse:
        """One of the model's files, by its name in `files`, streamed."""
        return downloads.file_response(owned_or_404(CatalogModel, request.user, pk), name)


class ModelGgufDownload(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    def get(self, request: Request, pk: str, output_type: str, name: str = "gguf") -> StreamingHttpResponse:
        """The proven GGUF of that type (or, at .../Modelfile, its Ollama Modelfile), streamed; 404 until one exists."""
        model = owned_or_404(CatalogModel, request.user, pk)
        return downloads.gguf_response(model, request.user, output_type, name)


class ModelProfile(APIView):
    @extend_schema(request=None, responses={202: dict})
    def post(self, request: Request, pk: str) -> Response:
        """Measure the three ways to run a derived model on a worker; the figures land in `deployment`."""
        model = owned_or_404(CatalogModel, request.user, pk)
        profile: dict[str, Any] = deployment.request_deployment_profile(model)
        return Response({"id": str(model.id), "deployment": profile}, status=status.HTTP_202_ACCEPTED)


class ModelImport(APIView):
    body_limits: BodyLimits | None = None

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body: the limits must see every chunk as it streams in.
        if request.method == "POST":
            self.body_limits = BodyLimits(request)
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}, "kind": {"type": "string", "enum": ["base", "adapter"]},
            "name": {"type": "string"}, "base": {"type": "string", "format": "uuid"}}}},
        responses={201: CatalogModelDetailSerializer},
    )
    def post(self, request: Request) -> Response:
        """Upload a base model (zipped safetensors folder or .gguf) or an adapter zip for a base in the catalog.

        413 when the declared or streamed size passes the upload limit or the owner's storage quota."""
        assert self.body_limits is not None
        self.body_limits.check_declared(request.user)  # authenticated now, and the body is still unread
        form = ImportForm(request.POST, request.FILES, user=request.user)
        self.body_limits.check_streamed()
        if not form.is_valid():
            raise ValidationError({field: [str(message) for message in messages] for field, messages in form.errors.items()})
        model = importing.import_upload(
            form.cleaned_data["file"], kind=form.cleaned_data["kind"], name=form.cleaned_data["name"],
            owner=request.user, base=form.cleaned_data.get("base"),
        )
        return Response(CatalogModelDetailSerializer(model).data, status=status.HTTP_201_CREATED)
