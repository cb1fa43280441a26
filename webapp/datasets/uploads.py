"""Upload size limits and the owner's storage quota, enforced before and while Django reads a request body, never after."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from webapp.accounts import quota
from webapp.lib.errors import LayercakeError

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


class UploadTooLarge(LayercakeError):
    def __init__(self, limit_mb: int) -> None:
        super().__init__(f"The file is larger than the {limit_mb} MB upload limit: split it or ask for a higher limit.", status=413)


def max_upload_bytes() -> int:
    return int(settings.LAYERCAKE_MAX_UPLOAD_MB) * 1024 * 1024


class BodyLimits:
    """The two limits on an upload's body, the upload limit and the owner's free quota, checked on the
    declared Content-Length before the body is read and on the bytes as they stream in.

    Make it before anything reads the body; call `check_declared` once the owner is known (a DRF view
    authenticates after its request was set up, still before the body is parsed) and `check_streamed`
    once the body was parsed.
    """

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.handler = install_size_limit(request, max_upload_bytes())
        self.owner: Any = None
        self.owner_room: int | None = None

    @classmethod
    def install(cls, request: HttpRequest, owner: Any) -> BodyLimits:
        limits = cls(request)
        limits.check_declared(owner)
        return limits

    def check_declared(self, owner: Any) -> None:
        """413 when the declared size passes either limit; the stream is then cut at the smaller of the two."""
        if declared_too_large(self.request, max_upload_bytes()):
            raise UploadTooLarge(settings.LAYERCAKE_MAX_UPLOAD_MB)
        room = quota.free_bytes(owner)
        if room is None:
            return
        declared = content_length(self.request) - FORM_OVERHEAD_BYTES
        if declared > room:
            raise quota.QuotaExceeded(quota.usage_of(owner), declared)
        self.owner, self.owner_room = owner, room
        self.handler.limit_bytes = min(self.handler.limit_bytes, room)  # the handler counts file bytes only

    def check_streamed(self) -> None:
        """After the body was parsed: the limit that stopped the stream, if one did, as a 413."""
        if not self.handler.exceeded:
            return
        if self.owner_room is not None and self.owner_room < max_upload_bytes():
            # Stopped part-way: the declared size says more about the whole than the bytes read.
            incoming = max(self.handler.received, content_length(self.request) - FORM_OVERHEAD_BYTES)
            raise quota.QuotaExceeded(quota.usage_of(self.owner), incoming)
        raise UploadTooLarge(settings.LAYERCAKE_MAX_UPLOAD_MB)
