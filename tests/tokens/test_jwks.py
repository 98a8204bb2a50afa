"""GET /.well-known/jwks.json: public members only, caching headers, ETag and 304."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from django.utils import timezone

from tokens import keys
from tokens.jwk import jwk_thumbprint
from tokens.rotation import signing_key_rotate

pytestmark = pytest.mark.django_db

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def fetch(client, **headers):
    return client.get("/.well-known/jwks.json", headers=headers)


def test_jwks_lists_every_published_key_with_public_members_only(client):
    keys.active_signing_key()
    signing_key_rotate()  # active + next
    response = fetch(client)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = json.loads(response.content)
    assert set(document) == {"keys"}
    assert len(document["keys"]) == 2
    for jwk in document["keys"]:
        assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e"}
        assert not PRIVATE_MEMBERS & set(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] == "RS256" and jwk["kty"] == "RSA"
        assert jwk["e"] == "AQAB"
        modulus = base64.urlsafe_b64decode(jwk["n"] + "==")
        assert len(modulus) * 8 == 2048 and modulus[0] != 0


def test_kid_is_the_rfc_7638_thumbprint(client):
    for jwk in json.loads(fetch(client).content)["keys"]:
        canonical = json.dumps(
            {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":")
        ).encode()
        digest = hashlib.sha256(canonical).digest()
        assert jwk["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_thumbprint_matches_the_rfc_7638_example():
    # RFC 7638 §3.1
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-"
        "65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
        "yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJ"
        "zKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_es256_keys_publish_crv_x_y(client, settings):
    settings.AUTHSERVER_SIGNING_ALG = "ES256"
    (jwk,) = json.loads(fetch(client).content)["keys"]
    assert set(jwk) == {"kty", "kid", "use", "alg", "crv", "x", "y"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256")
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32


def test_cache_control_is_public_with_the_configured_max_age(client, settings):
    settings.AUTHSERVER_JWKS_MAX_AGE = 123
    assert fetch(client)["Cache-Control"] == "public, max-age=123"


def test_strong_etag_is_honoured_with_304(client):
    first = fetch(client)
    etag = first["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    for header in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        again = fetch(client, if_none_match=header)
        assert again.status_code == 304, header
        assert again.content == b""
        assert again["ETag"] == etag
        assert again["Cache-Control"].startswith("public, max-age=")
    assert fetch(client, if_none_match='"something-else"').status_code == 200


def test_etag_changes_when_the_published_keys_change(client):
    before = fetch(client)["ETag"]  # creates the first key
    signing_key_rotate()
    after = fetch(client)
    assert after["ETag"] != before
    assert fetch(client, if_none_match=before).status_code == 200


def test_etag_is_the_same_on_every_worker_for_the_same_keys(client):
    first = fetch(client)["ETag"]
    keys.keyring_reset()  # a fresh process
    assert fetch(client)["ETag"] == first


def test_head_is_allowed_and_writes_are_not(client):
    assert client.head("/.well-known/jwks.json").status_code == 200
    assert client.post("/.well-known/jwks.json").status_code == 405
    assert client.delete("/.well-known/jwks.json").status_code == 405


def test_revoked_key_leaves_the_jwks_at_once(client):
    from tokens.rotation import signing_key_revoke

    kid = keys.active_signing_key().kid
    etag = fetch(client)["ETag"]
    signing_key_revoke(kid=kid, now=timezone.now())
    document = json.loads(fetch(client, if_none_match=etag).content)
    assert kid not in [jwk["kid"] for jwk in document["keys"]]
