"""Maps every API error to `{"error": "<one sentence>", "details": [...]}` (API.md)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from webapp.lib.errors import LayercakeError


def flatten_validation_errors(detail: Any, prefix: str = "") -> list[dict[str, Any]]:
    """DRF's nested {"field": ["msg"]} becomes [{"row": None, "field": "field", "message": "msg"}]."""
    if isinstance(detail, dict):
        found: list[dict[str, Any]] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            found += flatten_validation_errors(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
        return found
    if isinstance(detail, list):
        found = []
        for item in detail:
            found += flatten_validation_errors(item, prefix)
        return found
    return [{"row": None, "field": prefix or None, "message": str(detail)}]


def error_body(message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": message, "details": details or []}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, LayercakeError):
        return Response(error_body(exc.message, [d.as_dict() for d in exc.details]), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found: it does not exist or it is not yours.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a 500: a bug, left to Django's error reporting
    if isinstance(exc, exceptions.ValidationError):
        details = flatten_validation_errors(exc.detail)
        first = details[0] if details else {"field": None, "message": "invalid request"}
        where = f"`{first['field']}`: " if first.get("field") else ""
        response.data = error_body(f"Invalid request: {where}{first['message']}", details)
    else:
        detail = getattr(exc, "detail", str(exc))
        response.data = error_body(str(detail))
    return response


def json_not_found(request: Any, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("Not found: no such endpoint or object."), status=status.HTTP_404_NOT_FOUND)


def json_server_error(request: Any) -> JsonResponse:
    return JsonResponse(error_body("Internal error: this is a bug on our side; it has been logged."), status=500)
