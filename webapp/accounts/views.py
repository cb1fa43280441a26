"""Sign-up and the account page (API token, storage used); login, logout and password change are Django's own views."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from knox.models import AuthToken

from webapp.accounts import quota
from webapp.accounts.forms import SignupForm
from webapp.accounts.services import new_api_token


@login_not_required
def signup(request: HttpRequest) -> HttpResponse:
    if not settings.LAYERCAKE_SIGNUP:
        raise Http404("Sign-up is turned off on this installation.")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/signup.html", {"form": form})


def account(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)  # the login middleware let only logged-in users through
    new_key = new_api_token(user, replace=True) if request.method == "POST" else None
    tokens = AuthToken.objects.filter(user=user).order_by("-created")
    context = {
        "tokens": tokens,
        "new_key": new_key,
        "usage": quota.usage_of(user),
        "checkpoint_retention_hours": settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS,
    }
    return render(request, "accounts/account.html", context)
