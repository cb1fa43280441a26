from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def signup_setting(request: HttpRequest) -> dict[str, bool]:
    return {"signup_enabled": settings.LAYERCAKE_SIGNUP}
