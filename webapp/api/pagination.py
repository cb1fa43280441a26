"""Lists stay JSON arrays (API.md) and come in pages: `?limit=&offset=`, the next page in a `Link` header."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response


class LinkHeaderPagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000

    def get_paginated_response(self, data: Any) -> Response:
        headers = {"X-Total-Count": str(self.count)}
        links = [f'<{url}>; rel="{rel}"' for rel, url in (("next", self.get_next_link()), ("prev", self.get_previous_link())) if url]
        if links:
            headers["Link"] = ", ".join(links)
        return Response(data, headers=headers)

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema


# For list views that paginate by hand (an APIView rather than a generic list view): the same two parameters.
LIST_PAGE_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="Items per page (default 100, at most 1000)."),
    OpenApiParameter("offset", OpenApiTypes.INT, description="Items to skip."),
]
