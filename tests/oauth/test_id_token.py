"""ID tokens (OpenID Connect Core §2, §3.1.3.6): claims, signature by the published keys."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import jwt
import pytest
from django.test import Client as HttpClient

from tests.oauth.helpers import tokens_for

pytestmark = pytest.mark.django_db


def jwks_key(http, token):
    kid = jwt.get_unverified_header(token)["kid"]
    keys = json.loads(http.get("/.well-known/jwks.json").content)["keys"]
    (jwk,) = [k for k in keys if k["kid"] == kid]
    return jwt.PyJWK(jwk)


def test_id_token_claims(browser, confidential, alice):
    http = HttpClient()
    before = int(time.time())
    tokens = tokens_for(browser, http, confidential, nonce="nonce-123")
    id_token = tokens["id_token"]
    header = jwt.get_unverified_header(id_token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]
    claims = jwt.decode(
        id_token,
        jwks_key(http, id_token),
        algorithms=["RS256"],
        audience=confidential.client_id,
        issuer="http://testserver",
    )
    assert claims["sub"] == alice.sub
    assert claims["nonce"] == "nonce-123"
    assert claims["azp"] == confidential.client_id
    assert claims["auth_time"] == browser.session["auth_time"]
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 600
    digest = hashlib.sha256(tokens["access_token"].encode()).digest()
    expected = base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert claims["at_hash"] == expected
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sid"] == access["sid"]
    assert claims["email"] == alice.email
    assert claims["email_verified"] is False


def test_no_nonce_when_none_was_sent(browser, confidential):
    tokens = tokens_for(browser, HttpClient(), confidential, nonce=None)
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert "nonce" not in claims


def test_no_id_token_without_openid(browser, make_client):
    registered = make_client(scopes=("openid", "api", "offline_access"))
    tokens = tokens_for(browser, HttpClient(), registered, scope="api offline_access")
    assert "id_token" not in tokens
    assert "refresh_token" in tokens


def test_id_token_lifetime_setting(browser, confidential, settings):
    settings.AUTHSERVER_ID_TOKEN_TTL = 120
    tokens = tokens_for(browser, HttpClient(), confidential)
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
