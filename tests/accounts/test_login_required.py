"""Every page but login needs a login; the API answers 401 without a token."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

PAGES = ["/", "/models/", "/account/", "/account/password/"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_page_request_redirects_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_is_open(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Log in" in response.content


def test_logged_in_user_sees_the_catalog(client_alice):
    response = client_alice.get("/models/")
    assert response.status_code == 200


def test_api_without_token_is_401_with_json_error(client):
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error", "details"}
    assert body["error"]


def test_schema_needs_a_token_too(client):
    assert client.get("/api/v1/schema/").status_code == 401


def test_api_with_a_wrong_token_is_401(client):
    response = client.get("/api/v1/models/", HTTP_AUTHORIZATION="Token not-a-real-key")
    assert response.status_code == 401


def test_unknown_api_path_is_a_json_404(api_alice):
    response = api_alice.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert "error" in response.json()


def test_login_with_password_reaches_the_catalog(client, alice):
    from tests.conftest import PASSWORD

    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("catalog:list")


def test_openapi_schema_is_served(api_alice):
    response = api_alice.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/models/" in response.content
