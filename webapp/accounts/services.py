"""Account operations shared by the management commands and the views."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.authtoken.models import Token


def api_token_for(username: str) -> tuple[str, bool]:
    """Return (token key, whether the user was created); a created user has no usable password."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    token, _ = Token.objects.get_or_create(user=user)
    return token.key, created


def ensure_demo_login(username: str = "demo", password: str = "layercake") -> AbstractBaseUser | None:
    """Create a demo user when the site has no users at all; returns it, or None when users exist."""
    user_model = get_user_model()
    if user_model.objects.exists():
        return None
    return user_model.objects.create_user(username=username, password=password)
