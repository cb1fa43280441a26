"""API v1 endpoints for jobs, and for the jobs started on a model (merge, GGUF export)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import services
from jobs.models import Job, Priority
from jobs.serializers import JobCreateSerializer, JobEventSerializer, JobSerializer
from webapp.api.pagination import LinkHeaderPagination
from webapp.catalog.models import CatalogModel
from webapp.lib.access import owned_or_404
from webapp.lib.errors import LayercakeError

EVENTS_PAGE = 1000
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Any string up to 200 characters: a second POST with the same key answers the job the first one created.",
)


class JobList(generics.ListCreateAPIView):
    """Newest first, 100 a page (`?limit=` up to 1000, `?offset=`); filters `?status=&task=&method=`."""

    serializer_class = JobSerializer
    pagination_class = LinkHeaderPagination

    def get_queryset(self):  # type: ignore[no-untyped-def]
        jobs = Job.objects.for_user(self.request.user).prefetch_related("datasets")
        for name in ("status", "task", "method"):
            if value := self.request.query_params.get(name):
                jobs = jobs.filter(**{name: value})
        return jobs.order_by("-created_at")

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer}, parameters=[IDEMPOTENCY_KEY])
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            raise LayercakeError("The Idempotency-Key header is longer than 200 characters; send a shorter key.")
        if key and (done := services.submitted_job(request.user, key)) is not None:
            return Response(JobSerializer(done).data, status=status.HTTP_201_CREATED, headers={"Idempotent-Replayed": "true"})
        given = JobCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        plan = services.plan_job(
            request.user,
            data["base_model"],
            data["dataset"],
            data["method"],
            data.get("task") or None,
            data["hyperparameters"],
            allow_shorter_max_length=data["allow_shorter_max_length"],
        )
        job = services.create_job(plan, submit_token=key or None, priority=Priority[data["priority"].upper()])
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetail(generics.RetrieveAPIView):
    serializer_class = JobSerializer

    def get_object(self) -> Job:
        return owned_or_404(Job.objects.prefetch_related("datasets"), self.request.user, self.kwargs["pk"])


class JobEvents(APIView):
    """Recorded progress points, oldest first; `?after=<event id>` pages through long jobs."""

    @extend_schema(responses={200: JobEventSerializer(many=True)})
    def get(self, request: Request, pk: str) -> Response:
        job = owned_or_404(Job, request.user, pk)
        events = job.events.order_by("id")
        after = request.query_params.get("after", "")
        if after.isdigit():
            events = events.filter(id__gt=int(after))
        return Response(JobEventSerializer(events[:EVENTS_PAGE], many=True).data)


class JobCancel(APIView):
    """202: a waiting job is cancelled, a running one stops at its next step; 409: the job already ended."""

    @extend_schema(request=None, responses={202: JobSerializer, 409: None})
    def post(self, request: Request, pk: str) -> Response:
        job = services.cancel(owned_or_404(Job, request.user, pk))
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class JobRetry(APIView):
    @extend_schema(request=None, responses={201: JobSerializer})
    def post(self, request: Request, pk: str) -> Response:
        job = services.retry(owned_or_404(Job, request.user, pk))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class ModelMerge(APIView):
    @extend_schema(request=None, responses={202: dict})
    def post(self, request: Request, pk: str) -> Response:
        """On an adapter: start a job that merges it into its base and registers a `merged` model."""
        model = owned_or_404(CatalogModel, request.user, pk)
        job = services.start_merge(model, request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ModelExport(APIView):
    @extend_schema(
        request={"application/json": {"type": "object", "properties": {"type": {"type": "string", "enum": ["f16", "q8_0"]}},
                                      "required": ["type"]}},
        responses={202: dict},
    )
    def post(self, request: Request, pk: str) -> Response:
        """Start a job that writes the model as GGUF (f16 or q8_0) with an Ollama Modelfile and proves it answers the same."""
        model = owned_or_404(CatalogModel, request.user, pk)
        output_type = request.data.get("type") if isinstance(request.data, dict) else None
        job = services.start_export(model, request.user, output_type)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
