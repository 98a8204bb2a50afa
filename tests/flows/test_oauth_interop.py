"""Interoperability: OAuth/OIDC client libraries no one here wrote, against authserver under
gunicorn on PostgreSQL, configured only from discovery.

- authlib's requests client (OAuth2Session) does code + PKCE S256 for a confidential client,
  refresh-token rotation, reuse detection, revocation, introspection and client credentials;
- requests-oauthlib (oauthlib's client) does code + PKCE for a public client and client
  credentials with BackendApplicationClient;
- the ID token is validated from the JWKS by joserfc, and the access token by PyJWT's
  PyJWKClient, neither of which authserver uses to sign (it signs through simplejwt/PyJWT's
  encoder with its own key store).

The "browser" is a requests session that signs in on the hosted login page (its real form,
CSRF token included) and approves the consent page. One gunicorn per test; each test is a
whole scenario.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Iterator
from urllib.parse import quote, urljoin, urlsplit

import jwt
import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from accounts.services import user_create
from authserver import settings as app_settings
from oauth.clients import client_create
from tests.conftest import PASSWORD
from tests.live import Gunicorn

pytestmark = pytest.mark.slow

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read off the redirect
SCOPE = "openid profile email offline_access"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


@pytest.fixture
def server(child_env, settings) -> Iterator[Gunicorn]:
    settings.PASSWORD_HASHERS = app_settings.PASSWORD_HASHERS  # the child's hasher list
    user_create(username="alice", email="alice@example.com", password=PASSWORD)
    running = Gunicorn(child_env, workers=2)
    # Discovery names the address the clients use.
    running.env["AUTHSERVER_ISSUER"] = running.url
    with running:
        yield running


def discover(server: Gunicorn) -> dict:
    response = requests.get(server.url + "/.well-known/openid-configuration", timeout=10)
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == server.url
    return meta


def _form_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def browser_authorize(
    server: Gunicorn, browser: requests.Session, url: str, username: str = "alice"
) -> str:
    """Follow the authorization URL as a person would: sign in, approve; return the callback
    URL the browser is finally sent to (with code and state)."""
    for _ in range(10):
        response = browser.get(url, allow_redirects=False, timeout=10)
        if response.status_code in (302, 303):
            location = urljoin(url, response.headers["Location"])
            if location.startswith(REDIRECT_URI):
                return location
            url = location
            continue
        assert response.status_code == 200, response.text[:500]
        page = response.text
        fields = _form_fields(page)
        if 'name="password"' in page:
            fields.update(username=username, password=PASSWORD)
            target = server.url + "/login"
        else:
            assert 'name="decision"' in page, page[:500]
            fields["decision"] = "allow"
            target = server.url + "/oauth/authorize/decision"
        response = browser.post(target, data=fields, allow_redirects=False, timeout=10)
        assert response.status_code in (302, 303), response.text[:500]
        location = urljoin(target, response.headers["Location"])
        if location.startswith(REDIRECT_URI):
            return location
        url = location
    raise AssertionError("the authorization did not come back to the client")


def validate_id_token(meta: dict, id_token: str, client_id: str, nonce: str) -> dict:
    """joserfc, from the JWKS: signature, iss, aud, exp, nonce."""
    jwks = requests.get(meta["jwks_uri"], timeout=10).json()
    token = jose_jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        auth_time={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    registry.validate(token.claims)
    return token.claims


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_authlib_confidential_client_full_lifecycle(server):
    meta = discover(server)
    assert meta["code_challenge_methods_supported"] == ["S256"]
    registered = client_create(
        name="Interop (authlib)",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        scopes=SCOPE.split(),
        audiences=["https://api.example.com"],
    )
    client_id, secret = registered.client.client_id, registered.secret
    session = OAuth2Session(
        client_id,
        secret,
        scope=SCOPE,
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(12)
    url, state = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    browser = requests.Session()
    callback = browser_authorize(server, browser, url)
    returned = dict(p.split("=", 1) for p in urlsplit(callback).query.split("&"))
    assert returned["state"] == state and returned["iss"] == quote(meta["issuer"], safe="")
    code = returned["code"]
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert {"access_token", "refresh_token", "id_token", "expires_in"} <= set(token)

    # The ID token, validated by joserfc from the JWKS; the access token by PyJWT's JWKS client.
    claims = validate_id_token(meta, token["id_token"], client_id, nonce)
    assert claims["at_hash"] == at_hash(token["access_token"])
    signing_key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token["access_token"])
    access = jwt.decode(
        token["access_token"],
        signing_key.key,
        algorithms=["RS256"],
        audience="https://api.example.com",
        issuer=meta["issuer"],
    )
    assert access["sub"] == claims["sub"] and access["client_id"] == client_id
    assert jwt.get_unverified_header(token["access_token"])["typ"] == "at+jwt"

    userinfo = session.get(meta["userinfo_endpoint"], timeout=10)
    assert userinfo.status_code == 200
    assert userinfo.json()["email"] == "alice@example.com"

    # The code again: refused, and the tokens it produced stop working.
    replay = requests.post(
        meta["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(client_id, secret),
        timeout=10,
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert replay.headers["Cache-Control"] == "no-store"
    assert session.get(meta["userinfo_endpoint"], timeout=10).status_code == 401

    # A fresh login (the browser is still signed in; consent remembered: no pages at all).
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    callback = browser_authorize(server, browser, url)
    first = session.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )

    # Refresh rotation, then reuse detection through the token endpoint.
    second = session.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    introspected = session.introspect_token(
        meta["introspection_endpoint"], token=second["access_token"]
    ).json()
    assert introspected["active"] is True and introspected["client_id"] == client_id
    with pytest.raises(OAuthError) as reuse:
        session.refresh_token(meta["token_endpoint"], refresh_token=first["refresh_token"])
    assert reuse.value.error == "invalid_grant"
    with pytest.raises(OAuthError):
        session.refresh_token(meta["token_endpoint"], refresh_token=second["refresh_token"])
    gone = session.introspect_token(meta["introspection_endpoint"], token=second["access_token"])
    assert gone.json() == {"active": False}

    # Once more, then revoke the refresh token: the grant ends, its access token too.
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    third = session.fetch_token(
        meta["token_endpoint"],
        authorization_response=browser_authorize(server, browser, url),
        code_verifier=verifier,
    )
    revoked = session.revoke_token(
        meta["revocation_endpoint"], token=third["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoked.status_code == 200
    assert session.get(meta["userinfo_endpoint"], timeout=10).status_code == 401
    assert session.introspect_token(
        meta["introspection_endpoint"], token=third["access_token"]
    ).json() == {"active": False}


def test_requests_oauthlib_public_client_and_machine_clients(server, monkeypatch):
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session as OAuthlibSession

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback in tests
    meta = discover(server)
    public = client_create(
        name="Interop (requests-oauthlib)",
        client_type="public",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=[REDIRECT_URI],
        scopes=SCOPE.split(),
    ).client
    session = OAuthlibSession(
        public.client_id, redirect_uri=REDIRECT_URI, scope=SCOPE.split(), pkce="S256"
    )
    url, state = session.authorization_url(meta["authorization_endpoint"], nonce="n-1")
    assert "code_challenge_method=S256" in url
    callback = browser_authorize(server, requests.Session(), url)
    assert f"state={state}" in callback
    token = session.fetch_token(
        meta["token_endpoint"], authorization_response=callback, include_client_id=True
    )
    validate_id_token(meta, token["id_token"], public.client_id, "n-1")
    assert session.get(meta["userinfo_endpoint"], timeout=10).json()["preferred_username"] == (
        "alice"
    )
    refreshed = session.refresh_token(
        meta["token_endpoint"], refresh_token=token["refresh_token"], client_id=public.client_id
    )
    assert refreshed["refresh_token"] != token["refresh_token"]

    # The public client without its verifier, or with the wrong one: no tokens.
    url, _ = session.authorization_url(meta["authorization_endpoint"])
    code = dict(
        p.split("=", 1)
        for p in urlsplit(browser_authorize(server, requests.Session(), url)).query.split("&")
    )["code"]
    for verifier in (None, secrets.token_urlsafe(48)):
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": public.client_id,
        }
        if verifier:
            data["code_verifier"] = verifier
        response = requests.post(meta["token_endpoint"], data=data, timeout=10)
        assert response.status_code == 400
        assert response.json()["error"] in {"invalid_request", "invalid_grant"}

    # A redirect_uri that is not registered: a page, never a redirect.
    bad = requests.get(
        meta["authorization_endpoint"],
        params={
            "response_type": "code",
            "client_id": public.client_id,
            "redirect_uri": "http://127.0.0.1:9/evil",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert bad.status_code == 400 and "Location" not in bad.headers

    # Client credentials, with both libraries.
    machine = client_create(
        name="Interop machine",
        client_type="confidential",
        grant_types=["client_credentials"],
        scopes=["reports:read"],
        audiences=["https://reports.example.com"],
    )
    backend = OAuthlibSession(client=BackendApplicationClient(client_id=machine.client.client_id))
    cc = backend.fetch_token(
        meta["token_endpoint"],
        client_id=machine.client.client_id,
        client_secret=machine.secret,
    )
    assert cc["token_type"].lower() == "bearer" and "refresh_token" not in cc
    authlib_cc = OAuth2Session(machine.client.client_id, machine.secret).fetch_token(
        meta["token_endpoint"], grant_type="client_credentials"
    )
    for access_token in (cc["access_token"], authlib_cc["access_token"]):
        key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(access_token)
        claims = jwt.decode(
            access_token,
            key.key,
            algorithms=["RS256"],
            audience="https://reports.example.com",
            issuer=meta["issuer"],
        )
        assert claims["sub"] == machine.client.client_id
        assert claims["scope"] == "reports:read"

    # A wrong secret: 401 with WWW-Authenticate, JSON per RFC 6749 §5.2.
    wrong = requests.post(
        meta["token_endpoint"],
        data={"grant_type": "client_credentials"},
        auth=(machine.client.client_id, "wrong"),
        timeout=10,
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
