"""Error pages for the browser side (the API answers JSON through webapp.api.errors)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string


def not_found_page(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponse(render_to_string("404.html", request=request), status=404)


def server_error_page(request: HttpRequest) -> HttpResponse:
    # No request context: whatever broke may break the context processors again.
    return HttpResponse(render_to_string("500.html"), status=500)
