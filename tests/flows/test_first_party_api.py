"""The first-party JSON API, in-process: exact statuses, headers and bodies."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from accounts.services import user_set_password
from audit.models import AuthEvent
from sessions.models import Session
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"


@pytest.fixture
def api():
    return APIClient(HTTP_USER_AGENT="pytest-client/1.0")


@pytest.fixture
def alice(make_user):
    return make_user(username="alice", email="alice@example.com")


def login(api, username="alice", password=PASSWORD):
    return api.post(LOGIN, {"username": username, "password": password}, format="json")


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_login_returns_a_token_pair(api, alice):
    response = login(api)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 600
    assert response["Cache-Control"] == "no-store"
    assert AuthEvent.objects.filter(event_type="login.succeeded", user=alice).exists()


def test_login_accepts_the_email_address(api, alice):
    assert login(api, username="Alice@Example.com").status_code == 200


def test_access_token_carries_sub_aud_and_sid(api, alice, settings):
    import jwt

    body = login(api).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == str(alice.public_id)
    assert claims["aud"] in (
        settings.AUTHSERVER_DEFAULT_AUDIENCE,
        [settings.AUTHSERVER_DEFAULT_AUDIENCE],
    )
    session = Session.objects.get(user=alice)
    assert claims["sid"] == str(session.id)


def test_me_returns_the_profile(api, alice):
    token = login(api).json()["access_token"]
    response = api.get("/api/v1/me", **bearer(token))
    assert response.status_code == 200
    assert response.json() == {
        "sub": str(alice.public_id),
        "username": "alice",
        "email": "alice@example.com",
    }


def test_me_without_a_token_is_401_with_bearer_challenge(api):
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "e30.e30.", "x" * 5000])
def test_malformed_bearer_tokens_are_401_json(api, token):
    response = api.get("/api/v1/me", **bearer(token))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_refresh_rotates_and_reuse_revokes_the_session(api, alice):
    first = login(api).json()
    second = api.post(REFRESH, {"refresh_token": first["refresh_token"]}, format="json")
    assert second.status_code == 200
    assert second["Cache-Control"] == "no-store"
    second = second.json()
    third = api.post(REFRESH, {"refresh_token": second["refresh_token"]}, format="json").json()
    replay = api.post(REFRESH, {"refresh_token": first["refresh_token"]}, format="json")
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_grant"
    newest = api.post(REFRESH, {"refresh_token": third["refresh_token"]}, format="json")
    assert newest.status_code == 401
    # Access tokens of the revoked session no longer work on our own endpoints.
    assert api.get("/api/v1/me", **bearer(third["access_token"])).status_code == 401
    assert AuthEvent.objects.filter(event_type="token.reuse_detected", user=alice).count() == 1


def test_unknown_and_malformed_refresh_tokens_are_401_invalid_grant(api):
    for value in ["A" * 43, "not a token", "x" * 512]:
        response = api.post(REFRESH, {"refresh_token": value}, format="json")
        assert response.status_code == 401, value
        assert response.json()["error"] == "invalid_grant"


def test_logout_ends_the_session(api, alice):
    pair = login(api).json()
    response = api.post(LOGOUT, {"refresh_token": pair["refresh_token"]}, format="json")
    assert response.status_code == 204
    assert (
        api.post(REFRESH, {"refresh_token": pair["refresh_token"]}, format="json").status_code
        == 401
    )
    assert api.get("/api/v1/me", **bearer(pair["access_token"])).status_code == 401
    assert AuthEvent.objects.filter(event_type="logout", user=alice).count() == 1


def test_logout_all_ends_every_session(api, alice):
    one, two = login(api).json(), login(api).json()
    response = api.post(LOGOUT_ALL, **bearer(one["access_token"]))
    assert response.status_code == 204
    for pair in (one, two):
        assert (
            api.post(REFRESH, {"refresh_token": pair["refresh_token"]}, format="json").status_code
            == 401
        )
    assert AuthEvent.objects.filter(event_type="logout_all", user=alice).count() == 1


def test_sessions_list_and_delete(api, alice, make_user):
    first, second = login(api).json(), login(api).json()
    listing = api.get("/api/v1/sessions", **bearer(first["access_token"]))
    assert listing.status_code == 200
    rows = listing.json()
    assert len(rows) == 2
    assert {row["user_agent"] for row in rows} == {"pytest-client/1.0"}
    assert sum(row["current"] for row in rows) == 1
    other = next(row for row in rows if not row["current"])
    assert (
        api.delete(f"/api/v1/sessions/{other['id']}", **bearer(first["access_token"])).status_code
        == 204
    )
    assert (
        api.post(REFRESH, {"refresh_token": second["refresh_token"]}, format="json").status_code
        == 401
    )
    assert len(api.get("/api/v1/sessions", **bearer(first["access_token"])).json()) == 1


def test_cannot_end_another_users_session(api, alice, make_user):
    make_user(username="bob")
    mine = login(api).json()
    bobs = login(api, username="bob").json()
    bob_session = api.get("/api/v1/sessions", **bearer(bobs["access_token"])).json()[0]["id"]
    response = api.delete(f"/api/v1/sessions/{bob_session}", **bearer(mine["access_token"]))
    assert response.status_code == 404
    assert (
        api.post(REFRESH, {"refresh_token": bobs["refresh_token"]}, format="json").status_code
        == 200
    )


def test_password_change_kills_existing_sessions(api, alice):
    pair = login(api).json()
    user_set_password(user=alice, password="a completely new passphrase")
    assert (
        api.post(REFRESH, {"refresh_token": pair["refresh_token"]}, format="json").status_code
        == 401
    )
    assert api.get("/api/v1/me", **bearer(pair["access_token"])).status_code == 401


def test_deactivated_user_cannot_refresh(api, alice):
    pair = login(api).json()
    alice.is_active = False
    alice.save()
    assert (
        api.post(REFRESH, {"refresh_token": pair["refresh_token"]}, format="json").status_code
        == 401
    )


def test_unknown_user_and_wrong_password_get_identical_responses(api, alice):
    wrong = login(api, password="not the password")
    unknown = login(api, username="nobody-here")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert wrong.json() == {
        "error": "invalid_grant",
        "error_description": "The username or password is incorrect.",
    }


class TestBadInput:
    def test_wrong_content_type_is_415(self, api):
        response = api.post(
            LOGIN, "username=a&password=b", content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 415
        assert response.json()["error"] == "invalid_request"

    def test_malformed_json_is_400(self, api):
        response = api.post(LOGIN, "{not json", content_type="application/json")
        assert response.status_code == 400
        assert set(response.json()) == {"error", "error_description"}

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"username": "alice"},
            {"password": "x"},
            {"username": "", "password": "x"},
            [],
            "text",
            42,
        ],
    )
    def test_missing_fields_are_400(self, api, body):
        response = api.post(LOGIN, json.dumps(body), content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    @pytest.mark.parametrize(
        ("body", "description"),
        [
            ({}, "refresh_token: This field is required."),
            ({"refresh_token": None}, "refresh_token: This field is required."),
            ({"refresh_token": ""}, "refresh_token: This field may not be blank."),
            ({"refresh_token": 42}, "refresh_token: Not a valid string."),
            ({"refresh_token": ["a"]}, "refresh_token: Not a valid string."),
            ([], "The request body must be a JSON object."),
            ("text", "The request body must be a JSON object."),
        ],
    )
    def test_refresh_without_a_token_string_is_400(self, api, body, description):
        response = api.post(REFRESH, json.dumps(body), content_type="application/json")
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_request", "error_description": description}

    def test_oversized_fields_are_400(self, api):
        response = api.post(LOGIN, {"username": "a" * 300, "password": "x"}, format="json")
        assert response.status_code == 400
        response = api.post(LOGIN, {"username": "alice", "password": "x" * 2000}, format="json")
        assert response.status_code == 400
        response = api.post(REFRESH, {"refresh_token": "x" * 600}, format="json")
        assert response.status_code == 400

    def test_oversized_body_is_refused(self, api):
        response = api.post(
            LOGIN,
            json.dumps({"username": "a", "password": "x" * 400_000}),
            content_type="application/json",
        )
        assert response.status_code in (400, 413)
        assert response.json()["error"] == "invalid_request"

    def test_get_on_login_is_405_json(self, api):
        response = api.get(LOGIN)
        assert response.status_code == 405
        assert response.json()["error"] == "method_not_allowed"


def test_openapi_schema_lists_the_api(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    for path in [
        LOGIN,
        REFRESH,
        LOGOUT,
        LOGOUT_ALL,
        "/api/v1/me",
        "/api/v1/sessions",
        "/api/v1/sessions/{session_id}",
    ]:
        assert path in schema["paths"], path


def test_api_docs_page_is_self_contained(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assert "cdn" not in html.lower() and "https://" not in html.replace("https://swagger.io", "")
