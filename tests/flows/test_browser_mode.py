"""Browser mode: the refresh token lives in an HttpOnly; Secure; SameSite=Strict cookie + CSRF."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from sessions.apis import REFRESH_COOKIE_NAME
from sessions.refresh_tokens import TOKEN_LENGTH
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cookie_mode(settings):
    settings.AUTHSERVER_REFRESH_TOKEN_TRANSPORT = "cookie"


@pytest.fixture
def browser():
    # enforce_csrf_checks: behave like a browser-facing deployment, not the test shortcut.
    return APIClient(enforce_csrf_checks=True)


def csrf(browser) -> str:
    response = browser.get("/api/v1/auth/csrf")
    assert response.status_code == 200
    return response.json()["csrf_token"]


def login(browser, token: str | None):
    headers = {"HTTP_X_CSRFTOKEN": token} if token else {}
    return browser.post(
        "/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json", **headers
    )


def test_login_sets_a_strict_httponly_secure_cookie_and_no_body_token(browser, make_user):
    make_user(username="alice")
    response = login(browser, csrf(browser))
    assert response.status_code == 200
    assert "refresh_token" not in response.json()
    cookie = response.cookies[REFRESH_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/api/v1/auth/"
    assert len(cookie.value) == TOKEN_LENGTH


def test_login_without_csrf_token_is_refused(browser, make_user):
    make_user(username="alice")
    csrf(browser)
    response = login(browser, None)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_request"


def test_refresh_uses_and_rotates_the_cookie(browser, make_user):
    make_user(username="alice")
    token = csrf(browser)
    first = login(browser, token).cookies[REFRESH_COOKIE_NAME].value
    response = browser.post("/api/v1/auth/refresh", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200
    assert "access_token" in response.json()
    second = response.cookies[REFRESH_COOKIE_NAME].value
    assert second != first
    # A cross-site POST carries the cookie but cannot know the CSRF token.
    forged = browser.post("/api/v1/auth/refresh")
    assert forged.status_code == 403


def test_refresh_without_cookie_is_400(browser):
    token = csrf(browser)
    response = browser.post("/api/v1/auth/refresh", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_logout_clears_the_cookie_and_ends_the_session(browser, make_user):
    make_user(username="alice")
    token = csrf(browser)
    refresh = login(browser, token).cookies[REFRESH_COOKIE_NAME].value
    response = browser.post("/api/v1/auth/logout", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 204
    assert response.cookies[REFRESH_COOKIE_NAME].value == ""
    browser.cookies[REFRESH_COOKIE_NAME] = refresh
    assert browser.post("/api/v1/auth/refresh", HTTP_X_CSRFTOKEN=token).status_code == 401
