"""`manage.py api_token USERNAME` prints a working key on its last line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run_api_token(username: str) -> str:
    out = StringIO()
    call_command("api_token", username, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def test_api_token_creates_user_without_usable_password():
    run_api_token("dora")
    dora = get_user_model().objects.get(username="dora")
    assert not dora.has_usable_password()


def test_printed_key_authenticates_api_calls(client):
    key = run_api_token("dora")
    response = client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200


def test_api_token_is_stable_for_an_existing_user(alice):
    assert run_api_token("alice") == run_api_token("alice")
    assert get_user_model().objects.get(username="alice").has_usable_password()
