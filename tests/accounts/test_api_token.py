"""`manage.py api_token USERNAME` prints a working key on its last line; only its digest is stored."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from knox.models import AuthToken

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


def test_the_key_is_not_stored_anywhere_in_plaintext(alice):
    key = run_api_token("alice")
    stored = AuthToken.objects.get(user=alice)
    assert key not in (stored.digest, stored.token_key)
    assert len(stored.digest) == 128  # SHA-512
    assert key.startswith("lc_")


def test_each_call_makes_a_new_key_and_the_old_one_keeps_working(client, alice):
    first, second = run_api_token("alice"), run_api_token("alice")
    assert first != second
    for key in (first, second):
        assert client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert get_user_model().objects.get(username="alice").has_usable_password()


def test_replacing_on_the_account_page_shows_the_key_once_and_revokes_the_old(client_alice, client, alice):
    old = run_api_token("alice")
    page = client_alice.post("/account/").content.decode()
    new = next(t for t in AuthToken.objects.filter(user=alice))
    assert new.token_key in page
    assert client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Token {old}").status_code == 401
    again = client_alice.get("/account/").content.decode()
    assert "shown only now" not in again


def test_plaintext_tokens_from_before_are_hashed_and_keep_working(client, alice):
    import importlib

    from django.apps import apps
    from rest_framework.authtoken.models import Token

    migration = importlib.import_module("webapp.accounts.migrations.0001_hash_api_tokens")
    old = Token.objects.create(user=alice)
    migration.hash_plaintext_tokens(apps, None)
    assert not Token.objects.exists()
    assert client.get("/api/v1/models/", HTTP_AUTHORIZATION=f"Token {old.key}").status_code == 200
