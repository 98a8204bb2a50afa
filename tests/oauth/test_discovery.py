"""/.well-known/openid-configuration: every endpoint the issue lists, and what we support."""

from __future__ import annotations

import pytest
from django.test import Client as HttpClient
from django.urls import resolve

pytestmark = pytest.mark.django_db

ISSUER = "http://testserver"


def test_discovery_document():
    response = HttpClient().get("/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    doc = response.json()
    assert doc["issuer"] == ISSUER
    endpoints = {
        "authorization_endpoint": "/oauth/authorize",
        "token_endpoint": "/oauth/token",
        "userinfo_endpoint": "/oauth/userinfo",
        "jwks_uri": "/.well-known/jwks.json",
        "revocation_endpoint": "/oauth/revoke",
        "introspection_endpoint": "/oauth/introspect",
        "end_session_endpoint": "/oauth/end-session",
    }
    for name, path in endpoints.items():
        assert doc[name] == ISSUER + path
        resolve(path)  # routed
    assert doc["response_types_supported"] == ["code"]
    assert doc["response_modes_supported"] == ["query"]
    assert doc["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["subject_types_supported"] == ["public"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["scopes_supported"] == ["openid", "profile", "email", "groups", "offline_access"]
    assert doc["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",
    ]
    assert doc["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    for claim in (
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "at_hash",
        "email",
        "groups",
    ):
        assert claim in doc["claims_supported"]
    assert doc["request_uri_parameter_supported"] is False
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert "password" not in doc["grant_types_supported"]
    assert "implicit" not in doc["grant_types_supported"]


def test_discovery_follows_the_issuer(settings):
    settings.AUTHSERVER_ISSUER = "https://id.example.com"
    doc = HttpClient().get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == "https://id.example.com"
    assert doc["token_endpoint"] == "https://id.example.com/oauth/token"


def test_discovery_is_read_only():
    assert HttpClient().post("/.well-known/openid-configuration").status_code == 405
