"""RFC 9700 (OAuth 2.0 Security Best Current Practice) at the authorization endpoint, over HTTP
against gunicorn: issue 13, finding 13 (PKCE optional for confidential clients)."""

from __future__ import annotations

import secrets

import pytest
import requests

from accounts.services import user_create
from oauth.clients import ClientError, client_create
from oauth.models import AuthorizationCode, Client
from oauth.pkce import s256_challenge
from tests.conftest import PASSWORD
from tests.security.authorize_http import (
    REDIRECT_URI,
    Browser,
    authorize_path,
    live_server,
    register_client,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    yield from live_server(child_env, settings)


@pytest.fixture
def browser(server) -> Browser:
    """Signed in as alice (through an authorization with PKCE)."""
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    client, _ = register_client(name="Sign-in", skip_consent=True)
    browser = Browser(server)
    landing = browser.sign_in(browser.visit(authorize_path(client.client_id)), "alice")
    assert landing.at_client and "code" in landing.params
    AuthorizationCode.objects.all().delete()
    return browser


def test_confidential_client_must_send_code_challenge(server, browser):
    """Issue 13.13, RFC 9700 §2.1.1: PKCE is required for every client by default, confidential
    ones included; a request without code_challenge is invalid_request, redirected with
    error_description and state, and no code is issued even to a signed-in, consenting user."""
    client, _ = register_client(skip_consent=True)
    assert client.pkce_required
    landing = browser.visit(authorize_path(client.client_id, pkce=False, state="p1"))
    assert landing.at_client
    assert landing.params["error"] == "invalid_request"
    assert "PKCE" in landing.params["error_description"]
    assert landing.params["state"] == "p1" and "code" not in landing.params
    assert not AuthorizationCode.objects.exists()
    # A challenge without its method (RFC 7636 §4.3: plain) is refused as well.
    path = authorize_path(client.client_id, pkce=False, code_challenge="a" * 43)
    assert browser.visit(path).params["error"] == "invalid_request"
    assert not AuthorizationCode.objects.exists()


def test_exempted_confidential_client_works_without_pkce(server, browser):
    """Issue 13.13, RFC 9700 §2.1.1: the per-client opt-out (pkce_required off, for a legacy
    confidential client) issues a code without PKCE, redeemed with the secret alone."""
    client, secret = register_client(skip_consent=True, pkce_required=False)
    landing = browser.visit(authorize_path(client.client_id, pkce=False))
    assert landing.at_client and "code" in landing.params
    token = requests.post(
        server.url + "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": landing.params["code"],
            "redirect_uri": REDIRECT_URI,
        },
        auth=(client.client_id, secret),
        timeout=10,
    )
    assert token.status_code == 200, token.text


def test_pkce_required_client_redeems_with_verifier(server, browser):
    """Issue 13.13, RFC 9700 §2.1.1: the default client gets a code with S256 and redeems it with
    its verifier; the code cannot be redeemed without the verifier."""
    client, secret = register_client(skip_consent=True)
    verifier = secrets.token_urlsafe(48)
    path = authorize_path(client.client_id, pkce=False, code_challenge=s256_challenge(verifier))
    path += "&code_challenge_method=S256"
    landing = browser.visit(path)
    assert landing.at_client and "code" in landing.params
    data = {
        "grant_type": "authorization_code",
        "code": landing.params["code"],
        "redirect_uri": REDIRECT_URI,
    }
    without = requests.post(
        server.url + "/oauth/token", data=data, auth=(client.client_id, secret), timeout=10
    )
    assert without.status_code == 400 and without.json()["error"] == "invalid_request"


def test_public_clients_cannot_opt_out(db):
    """Issue 13.13, RFC 9700 §2.1.1: a public client has no secret; PKCE is all that binds its
    code, so pkce_required cannot be turned off for it (a validation error)."""
    with pytest.raises(ClientError, match="public clients must use PKCE"):
        client_create(
            name="SPA",
            client_type="public",
            grant_types=["authorization_code"],
            redirect_uris=[REDIRECT_URI],
            scopes=["openid"],
            pkce_required=False,
        )
    assert not Client.objects.exists()


def test_pkce_required_defaults_to_true(db):
    """Issue 13.13, RFC 9700 §2.1.1: required by default, in the model and in the database: the
    column's default is true, so rows that existed before the migration, and rows written by the
    previous release during a rolling upgrade, require PKCE."""
    from django.db import connection

    assert Client._meta.get_field("pkce_required").default is True
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_default FROM information_schema.columns"
            " WHERE table_name = 'oauth_client' AND column_name = 'pkce_required'"
        )
        (default,) = cursor.fetchone()
    assert default == "true"
