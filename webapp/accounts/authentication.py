"""API authentication: knox's hashed tokens, with a guard against guessing them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.request import Request


def _failures_key(address: str) -> str:
    return f"api-token-failures:{address}"


def forget_token_failures(address: str) -> None:
    """Lift the guard for one address (tests; an operator can do the same from `manage.py shell`)."""
    cache.delete(_failures_key(address))


class GuardedTokenAuthentication(TokenAuthentication):
    """Knox's `Authorization: Token <key>` check; after too many wrong keys from one address, 429 for a while.

    The count lives in the shared cache (Redis in production, a file cache locally), so every web process
    sees it. A right key does not reset it: a guesser who also holds one key gains nothing.
    """

    def authenticate(self, request: Request) -> Any:
        key = _failures_key(request.META.get("REMOTE_ADDR", ""))
        if cache.get(key, 0) >= settings.LAYERCAKE_TOKEN_FAILURE_LIMIT:
            raise exceptions.Throttled(
                wait=settings.LAYERCAKE_TOKEN_COOLOFF_SECONDS,
                detail="Too many wrong API tokens from this address; try again later.",
            )
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            if cache.add(key, 1, timeout=settings.LAYERCAKE_TOKEN_COOLOFF_SECONDS) is False:
                cache.incr(key)
            raise


class GuardedTokenScheme(OpenApiAuthenticationExtension):
    """The OpenAPI schema's name for it: the same `tokenAuth` header scheme DRF's own token auth had."""

    target_class = "webapp.accounts.authentication.GuardedTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'An API key with the prefix "Token": `Authorization: Token <key>`.',
        }
