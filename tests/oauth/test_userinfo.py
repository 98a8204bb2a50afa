"""UserInfo (OpenID Connect Core §5.3): claims per scope, bearer errors per RFC 6750 §3."""

from __future__ import annotations

import pytest
from django.test import Client as HttpClient

from sessions.services import user_sessions_revoke
from tests.oauth.helpers import machine_token, tokens_for, userinfo

pytestmark = pytest.mark.django_db


@pytest.fixture
def http():
    return HttpClient()


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", {"sub"}),
        ("openid email", {"sub", "email", "email_verified"}),
        ("openid profile", {"sub", "name", "given_name", "family_name", "preferred_username"}),
        (
            "openid profile email",
            {
                "sub",
                "name",
                "given_name",
                "family_name",
                "preferred_username",
                "email",
                "email_verified",
            },
        ),
    ],
)
def test_claims_follow_the_granted_scope(browser, http, confidential, alice, scope, claims):
    tokens = tokens_for(browser, http, confidential, scope=scope)
    response = userinfo(http, tokens["access_token"])
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == claims
    assert body["sub"] == alice.sub
    if "email" in claims:
        assert body["email"] == alice.email
        # A JSON boolean, false until the address is confirmed (OpenID Connect Core §5.1).
        assert body["email_verified"] is False
    if "name" in claims:
        assert body["name"] == "Alice Liddell" and body["preferred_username"] == "alice"


def test_post_is_accepted(browser, http, confidential):
    tokens = tokens_for(browser, http, confidential)
    response = http.post("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 200


def test_token_without_openid_scope_is_insufficient_scope(browser, http, make_client):
    registered = make_client(scopes=("openid", "profile", "api"))
    tokens = tokens_for(browser, http, registered, scope="api")
    response = userinfo(http, tokens["access_token"])
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]


def test_missing_token_is_401(http):
    response = http.get("/oauth/userinfo")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer x.y.z", "Bearer " + "a" * 9000, "Bearer é", "Bearer a b"]
)
def test_bad_tokens_are_401(http, header):
    response = http.get("/oauth/userinfo", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_machine_token_is_refused(http, machine):
    assert userinfo(http, machine_token(http, machine)).status_code == 401


def test_ended_session_is_refused(browser, http, confidential, alice):
    tokens = tokens_for(browser, http, confidential)
    user_sessions_revoke(user=alice, reason="logout_all")
    assert userinfo(http, tokens["access_token"]).status_code == 401


def test_deactivated_user_is_refused(browser, http, confidential, alice):
    tokens = tokens_for(browser, http, confidential)
    alice.is_active = False
    alice.save()
    assert userinfo(http, tokens["access_token"]).status_code == 401


def test_a_valid_token_costs_one_query(browser, confidential, django_assert_num_queries):
    """The session is loaded with its user (session_get); nothing is looked up twice."""
    tokens = tokens_for(browser, HttpClient(), confidential)
    http = HttpClient()
    assert userinfo(http, tokens["access_token"]).status_code == 200  # the client is cached now
    with django_assert_num_queries(1):
        assert userinfo(http, tokens["access_token"]).status_code == 200


def test_a_token_naming_another_users_session_is_refused(
    browser, http, confidential, alice, make_user
):
    """A token is only as good as its session, and the session must be its subject's (a token
    minted with the signing key and someone else's `sid`)."""
    from sessions.models import Session
    from tokens.issuance import access_token_issue

    tokens_for(browser, http, confidential)
    session = Session.objects.get(user=alice, client_id=confidential.client_id)
    bob = make_user("bob")
    forged = access_token_issue(
        subject=bob.sub,
        audience=confidential.client_id,
        client_id=confidential.client_id,
        scope="openid",
        session_id=str(session.id),
    )
    response = userinfo(http, forged.token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
