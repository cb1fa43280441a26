"""Upload size limits enforced before and while Django reads a request body, never after."""

from __future__ import annotations

from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

# Multipart framing and the small form fields ride along with the file.
FORM_OVERHEAD_BYTES = 1024 * 1024


class SizeLimitUploadHandler(FileUploadHandler):
    """Counts file bytes as they stream in and stops the upload once the limit is passed.

    It sits first among the upload handlers; Django's own handlers after it spool the
    file to a temporary file in chunks, so memory stays flat whatever the size.
    """

    def __init__(self, limit_bytes: int, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit_bytes = limit_bytes
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if self.received > self.limit_bytes:
            self.exceeded = True
            # Drain (not reset) the connection so the client reads our 413 instead of an error.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> Any:
        return None


def content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def install_size_limit(request: HttpRequest, limit_bytes: int) -> SizeLimitUploadHandler:
    """Put the limit first among the request's upload handlers; call before the body is read."""
    handler = SizeLimitUploadHandler(limit_bytes, request)
    handlers = request.upload_handlers
    assert isinstance(handlers, list), "the body was read before the size limit was installed"
    handlers.insert(0, handler)
    return handler


def declared_too_large(request: HttpRequest, limit_bytes: int) -> bool:
    return content_length(request) > limit_bytes + FORM_OVERHEAD_BYTES
