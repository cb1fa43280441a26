"""Account operations shared by the management commands and the views."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from knox.models import AuthToken


def new_api_token(user: Any, replace: bool = False) -> str:
    """A new API key for `user`, returned once: only its digest is stored. `replace` revokes the user's others."""
    if replace:
        AuthToken.objects.filter(user=user).delete()
    _, key = AuthToken.objects.create(user=user, expiry=None)
    return key


def api_token_for(username: str) -> tuple[str, bool]:
    """Return (a new token key, whether the user was created); a created user has no usable password."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return new_api_token(user), created


def ensure_first_login(username: str = "admin") -> tuple[AbstractBaseUser, str] | None:
    """On a site with no users, create a staff user with a random password; returns (user, password) once."""
    user_model = get_user_model()
    if user_model.objects.exists():
        return None
    password = secrets.token_urlsafe(12)
    user = user_model.objects.create_user(username=username, password=password, is_staff=True, is_superuser=True)
    return user, password
