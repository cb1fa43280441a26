"""Guessing is slowed down: wrong passwords lock a username out for a while, wrong API tokens an address."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(client, password: str):  # type: ignore[no-untyped-def]
    return client.post("/login/", {"username": "alice", "password": password})


def test_the_right_password_is_refused_after_five_wrong_ones(client, alice):
    for _ in range(4):
        assert login(client, "wrong").status_code == 200  # the form again, with its error
    assert login(client, "wrong").status_code == 429  # the fifth locks the pair out
    response = login(client, PASSWORD)
    assert response.status_code == 429
    assert "Too many wrong passwords" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_right_password_before_the_limit_resets_the_count(client, alice):
    for _ in range(4):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        login(client, "wrong")
    assert login(client, PASSWORD).status_code == 302


def test_the_admin_login_is_guarded_too(client, alice):
    alice.is_staff = True
    alice.save()
    for _ in range(5):
        client.post("/admin/login/", {"username": "alice", "password": "wrong"})
    assert client.post("/admin/login/", {"username": "alice", "password": PASSWORD}).status_code == 429


def test_wrong_api_tokens_get_429_after_the_limit_even_for_a_right_one(client, api_alice, settings):
    settings.LAYERCAKE_TOKEN_FAILURE_LIMIT = 3
    for _ in range(3):
        assert client.get("/api/v1/models/", HTTP_AUTHORIZATION="Token lc_guess").status_code == 401
    refused = api_alice.get("/api/v1/models/")
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("Too many wrong API tokens")


def test_a_fresh_install_gets_a_random_first_password_printed_once():
    out = StringIO()
    call_command("ensure_login", stdout=out)
    first = out.getvalue()
    password = first.split(" / ")[1].split()[0]
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password(password) and password != "layercake" and len(password) >= 12
    out = StringIO()
    call_command("ensure_login", stdout=out)
    assert password not in out.getvalue()


def test_signup_is_off_unless_turned_on(client):
    assert client.get("/signup/").status_code == 404
    assert "Sign up" not in client.get("/login/").content.decode()


def test_pages_carry_a_content_security_policy_without_inline_scripts(client_alice):
    policy = client_alice.get("/models/")["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
