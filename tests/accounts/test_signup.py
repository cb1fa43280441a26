"""Sign-up makes an account and logs it in; it can be turned off."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _signup_on(settings):  # off by default; an operator turns it on with LAYERCAKE_SIGNUP=1
    settings.LAYERCAKE_SIGNUP = True


def test_signup_creates_account_and_logs_in(client):
    response = client.post(
        "/signup/", {"username": "erin", "password1": "a-long-pass-phrase-9", "password2": "a-long-pass-phrase-9"}
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="erin").exists()
    assert client.get("/models/").status_code == 200


def test_signup_with_mismatched_passwords_shows_error(client):
    response = client.post("/signup/", {"username": "erin", "password1": "a-long-pass-phrase-9", "password2": "other"})
    assert response.status_code == 200
    assert not get_user_model().objects.filter(username="erin").exists()


def test_signup_can_be_turned_off(client, settings):
    settings.LAYERCAKE_SIGNUP = False
    assert client.get("/signup/").status_code == 404


def test_password_change(client_alice, alice):
    from tests.conftest import PASSWORD

    response = client_alice.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": "another-long-phrase-42", "new_password2": "another-long-phrase-42"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another-long-phrase-42")
