"""Revocation (RFC 7009) ends the grant; introspection (RFC 7662) says only what the asking
client may know."""

from __future__ import annotations

import pytest
from django.test import Client as HttpClient

from audit.models import AuthEvent
from tests.oauth.conftest import form_post
from tests.oauth.helpers import machine_token, tokens_for, userinfo
from tokens.models import Session

pytestmark = pytest.mark.django_db


@pytest.fixture
def http():
    return HttpClient()


def revoke(http, registered, token, hint=None, auth="basic"):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    header = registered.basic() if auth == "basic" else None
    if auth == "none":
        data["client_id"] = registered.client_id
    return form_post(http, "/oauth/revoke", data, header)


def introspect(http, registered, token, hint=None):
    data = {"token": token}
    if hint:
        data["token_type_hint"] = hint
    return form_post(http, "/oauth/introspect", data, registered.basic())


def refresh(http, registered, value):
    data = {"grant_type": "refresh_token", "refresh_token": value}
    return form_post(http, "/oauth/token", data, registered.basic())


# --- Revocation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_revoking_either_token_ends_the_grant(browser, http, confidential, which):
    tokens = tokens_for(browser, http, confidential)
    assert userinfo(http, tokens["access_token"]).status_code == 200
    response = revoke(http, confidential, tokens[which], hint=which)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert Session.objects.exclude(client_id="").get().revoke_reason == "token_revoked"
    assert userinfo(http, tokens["access_token"]).status_code == 401
    assert introspect(http, confidential, tokens["access_token"]).json() == {"active": False}
    assert introspect(http, confidential, tokens["refresh_token"]).json() == {"active": False}
    assert refresh(http, confidential, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    event = AuthEvent.objects.get(event_type="oauth.token_revoked")
    assert event.details == {"token_type": which}


def test_wrong_hint_still_finds_the_token(browser, http, confidential):
    tokens = tokens_for(browser, http, confidential)
    response = revoke(http, confidential, tokens["refresh_token"], hint="access_token")
    assert response.status_code == 200
    assert Session.objects.exclude(client_id="").get().revoked_at is not None


@pytest.mark.parametrize("token", ["unknown", "a" * 43, "x.y.z", "é", "a" * 10000])
def test_unknown_tokens_get_200(http, confidential, token):
    response = revoke(http, confidential, token)
    assert response.status_code == 200


def test_unknown_hint_is_ignored(browser, http, confidential):
    tokens = tokens_for(browser, http, confidential)
    assert revoke(http, confidential, tokens["refresh_token"], hint="bogus").status_code == 200
    assert Session.objects.exclude(client_id="").get().revoked_at is not None


def test_other_clients_token_is_not_revoked(browser, http, confidential, make_client):
    other = make_client(name="Other")
    tokens = tokens_for(browser, http, confidential)
    assert revoke(http, other, tokens["refresh_token"]).status_code == 200
    assert Session.objects.exclude(client_id="").get().revoked_at is None
    assert userinfo(http, tokens["access_token"]).status_code == 200


def test_public_client_revokes_with_client_id(browser, http, public):
    tokens = tokens_for(browser, http, public, auth="none")
    assert revoke(http, public, tokens["refresh_token"], auth="none").status_code == 200
    assert Session.objects.exclude(client_id="").get().revoked_at is not None


def test_revocation_requires_client_authentication(browser, http, confidential):
    tokens = tokens_for(browser, http, confidential)
    response = form_post(http, "/oauth/revoke", {"token": tokens["refresh_token"]})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in response
    assert Session.objects.exclude(client_id="").get().revoked_at is None


def test_revocation_without_token_is_invalid_request(http, confidential):
    response = form_post(http, "/oauth/revoke", {}, confidential.basic())
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_revocation_of_machine_token_is_200(http, machine):
    assert revoke(http, machine, machine_token(http, machine)).status_code == 200


def test_revocation_refuses_json(http, confidential):
    response = http.post(
        "/oauth/revoke",
        '{"token": "x"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=confidential.basic(),
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


# --- Introspection ------------------------------------------------------------------------------


def test_own_access_token_is_active_with_claims(browser, http, confidential, alice):
    tokens = tokens_for(browser, http, confidential)
    response = introspect(http, confidential, tokens["access_token"])
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == confidential.client_id
    assert body["sub"] == alice.sub
    assert body["scope"] == "openid profile email offline_access"
    assert body["token_type"] == "Bearer"
    assert body["iss"] == "http://testserver"
    assert {"exp", "iat", "aud", "jti", "sid"} <= set(body)


def test_own_refresh_token_is_active_until_spent(browser, http, confidential, alice):
    tokens = tokens_for(browser, http, confidential)
    body = introspect(http, confidential, tokens["refresh_token"], hint="refresh_token").json()
    assert body["active"] is True
    assert body["sub"] == alice.sub and body["client_id"] == confidential.client_id
    assert "token_type" not in body
    new = refresh(http, confidential, tokens["refresh_token"]).json()
    assert introspect(http, confidential, tokens["refresh_token"]).json() == {"active": False}
    assert introspect(http, confidential, new["refresh_token"]).json()["active"] is True


def test_other_clients_token_is_inactive(browser, http, confidential, make_client):
    other = make_client(name="Other")
    tokens = tokens_for(browser, http, confidential)
    assert introspect(http, other, tokens["access_token"]).json() == {"active": False}
    assert introspect(http, other, tokens["refresh_token"]).json() == {"active": False}


def test_resource_server_sees_every_clients_tokens(browser, http, confidential, make_client):
    api = make_client(
        name="API",
        grants=("client_credentials",),
        scopes=("x",),
        redirect_uris=(),
        is_resource_server=True,
    )
    tokens = tokens_for(browser, http, confidential)
    body = introspect(http, api, tokens["access_token"]).json()
    assert body["active"] is True and body["client_id"] == confidential.client_id


def test_machine_token_introspection(http, machine):
    body = introspect(http, machine, machine_token(http, machine)).json()
    assert body["active"] is True
    assert body["sub"] == machine.client_id and "sid" not in body


@pytest.mark.parametrize("token", ["", "nope", "a.b.c", "a" * 43, "é" * 20, "x" * 20000])
def test_garbage_is_inactive(http, confidential, token):
    response = introspect(http, confidential, token)
    if token == "":
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    else:
        assert response.status_code in (200, 413)
        if response.status_code == 200:
            assert response.json() == {"active": False}


def test_public_clients_cannot_introspect(browser, http, public):
    tokens = tokens_for(browser, http, public, auth="none")
    response = form_post(
        http, "/oauth/introspect", {"token": tokens["access_token"], "client_id": public.client_id}
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_introspection_after_logout_elsewhere(browser, http, confidential, alice):
    from tokens.sessions import user_sessions_revoke

    tokens = tokens_for(browser, http, confidential)
    user_sessions_revoke(user=alice, reason="logout_all")
    assert introspect(http, confidential, tokens["access_token"]).json() == {"active": False}


def test_expired_access_token_is_inactive(http, machine):
    from datetime import timedelta

    from django.utils import timezone

    from tokens.issuance import access_token_issue

    issued = access_token_issue(
        subject=machine.client_id,
        audience="https://orders.example.com",
        client_id=machine.client_id,
        lifetime=60,
        now=timezone.now() - timedelta(hours=1),
    )
    assert introspect(http, machine, issued.token).json() == {"active": False}
