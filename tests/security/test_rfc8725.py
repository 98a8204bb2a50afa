"""RFC 8725 (JSON Web Token Best Current Practices), enforced on every authserver endpoint that
accepts a bearer token, over HTTP against gunicorn + PostgreSQL.

Each forged token is presented to the first-party API (`/api/v1/me`), to UserInfo and to
introspection; all three must refuse it with the protocol's answer (401 `invalid_token`, or
`{"active": false}`), never a 500. Tokens "signed with the real key" are made in the test process
from the very key row the server signs with (same database, same KEK): they prove the check is
the claim or header at issue, not the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings as django_settings

from accounts.models import User
from tests.security.battery import (
    b64url,
    claims_for,
    forge,
    register,
    register_resource_server,
    serve,
)
from tokens.keys import active_signing_key, keyring_reset, published_key

pytestmark = pytest.mark.slow


@pytest.fixture
def server(child_env, settings):
    with serve(child_env, settings) as live:
        yield live


@pytest.fixture
def world(server):
    """The server, a resource-server client that may introspect any token, alice, and the
    active signing key (created through the server, loaded here from the shared database)."""
    first = server.tokens()  # the server creates its first key and alice's session
    keyring_reset()
    key = active_signing_key()
    sid = jwt.decode(first["access_token"], options={"verify_signature": False})["sid"]
    inspector = register_resource_server()
    return server, inspector, _Alice(User.objects.get(username="alice"), sid), key


class _Alice:
    """alice and one of her live sessions: tokens built here name it in `sid`."""

    def __init__(self, user: User, sid: str):
        self.user, self.sid = user, sid


def _audience() -> str:
    return django_settings.AUTHSERVER_DEFAULT_AUDIENCE


def _issuer() -> str:
    return django_settings.AUTHSERVER_ISSUER


def _refused_everywhere(server, inspector, token: str, what: str) -> None:
    me = server.me(token)
    assert me.status_code == 401, (what, me.status_code, me.text)
    assert me.json()["error"] == "invalid_token", (what, me.text)
    assert 'error="invalid_token"' in me.headers["WWW-Authenticate"], what
    info = server.userinfo(token)
    assert info.status_code == 401, (what, info.status_code, info.text)
    assert server.introspect(inspector, token) == {"active": False}, what


def _signed(key, header: dict, claims: dict) -> str:
    return jwt.encode(claims, key.backend.prepared_signing_key, algorithm=key.alg, headers=header)


def test_a_correctly_signed_token_is_accepted_as_the_baseline(world):
    """Baseline for the refusals below: a token built here with the server's key, `typ: at+jwt`
    and the right claims is accepted, so each refusal is caused by the one thing changed."""
    server, inspector, alice, key = world
    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    token = _signed(key, {"kid": key.kid, "typ": "at+jwt"}, claims)
    assert server.me(token).status_code == 200
    assert server.userinfo(token).status_code == 200
    assert server.introspect(inspector, token)["active"] is True


def test_alg_none_is_refused(world):
    """RFC 8725 §2.1/§3.1: an unsigned token (`alg: none`) naming a real kid is refused."""
    server, inspector, alice, key = world
    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    for alg in ("none", "None", "NONE", "nOnE"):
        token = forge({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, claims, alg="none")
        _refused_everywhere(server, inspector, token, f"alg={alg}")
        # The signature part present but empty, and the real token's signature glued on.
        real = _signed(key, {"kid": key.kid, "typ": "at+jwt"}, claims)
        _refused_everywhere(server, inspector, token + real.rsplit(".", 1)[1], f"{alg}+sig")


def test_hs256_with_the_public_key_as_hmac_secret_is_refused(world):
    """RFC 8725 §2.1/§3.1 (algorithm confusion): an HS256 token whose HMAC key is the server's
    published RSA public key (PEM, DER, or the JWK's `n`) is refused: the algorithm is pinned
    to the key's, never taken from the header."""
    server, inspector, alice, key = world
    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    public = key.backend.prepared_signing_key.public_key()
    secrets_to_try = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pkcs1": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-n": published_key(key.kid).jwk["n"].encode(),
    }
    for name, secret in secrets_to_try.items():
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
            signing_input = (
                b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
            )
            signature = hmac.new(secret, signing_input.encode(), digest).digest()
            token = signing_input + "." + b64url(signature)
            _refused_everywhere(server, inspector, token, f"{alg} keyed with {name}")


def test_alg_that_does_not_match_the_kid_is_refused(world):
    """RFC 8725 §3.1 (use appropriate algorithms) and §2.1: the header's `alg` must equal the
    algorithm of the key its `kid` names. A token really signed by the server's RSA key but with
    PS256/RS384/RS512 in the header, and an ES256 token under an RSA kid, are refused."""
    server, inspector, alice, key = world
    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    private = key.backend.prepared_signing_key
    for alg in ("PS256", "RS384", "RS512"):
        token = jwt.encode(
            claims, private, algorithm=alg, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        _refused_everywhere(server, inspector, token, alg)
    from cryptography.hazmat.primitives.asymmetric import ec

    token = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    _refused_everywhere(server, inspector, token, "ES256 under an RSA kid")


def test_an_id_token_is_not_an_access_token(world):
    """RFC 8725 §2.8/§3.11 (cross-JWT confusion, explicit typing) and RFC 9068 §4: an ID token
    issued by authserver, signed by the same key, is not accepted as a bearer access token; nor
    is any token of the same key whose `typ` is missing, `JWT`, or another application type."""
    server, inspector, alice, key = world
    app = register()
    browser = server.browser()
    issued = server.oauth_tokens(browser, app)
    id_token = issued["id_token"]
    assert jwt.get_unverified_header(id_token)["typ"] != "at+jwt"
    me = server.me(id_token)
    assert me.status_code == 401 and me.json()["error"] == "invalid_token", me.text
    assert server.userinfo(id_token).status_code == 401
    # The access token of the same exchange works, so the refusal is about the type.
    assert server.userinfo(issued["access_token"]).status_code == 200

    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    for typ in (None, "JWT", "jwt", "id_token+jwt", "logout+jwt", "at+jwt ", "at+JWS", ""):
        header = {"kid": key.kid}
        if typ is not None:
            header["typ"] = typ
        header["alg"] = key.alg
        token = _raw_rs256(key.backend.prepared_signing_key, header, claims)
        _refused_everywhere(server, inspector, token, f"typ={typ!r}")


def _raw_rs256(private_key, header: dict, claims: dict) -> str:
    """RS256 over exactly this header (PyJWT's encoder adds `typ` and validates `kid`)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)


def test_keys_named_in_the_token_header_are_never_used(world):
    """RFC 8725 §3.10 (do not trust received claims) and RFC 7515 §4.1.2-§4.1.6: `jwk`, `jku`,
    `x5u`, `x5c` and `crit` are refused outright, whether the token is signed by an attacker's
    key that the header carries or by the server's own key; an unknown or hostile `kid` is an
    unknown key, not a lookup."""
    server, inspector, alice, key = world
    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attacker_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    attacker_jwk["kid"] = "attacker"
    hostile = {
        "jwk": attacker_jwk,
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        "crit": ["exp"],
    }
    for name, value in hostile.items():
        header = {"kid": key.kid, "typ": "at+jwt", name: value}
        _refused_everywhere(server, inspector, _signed(key, header, claims), f"own key + {name}")
        header = {"kid": "attacker", "typ": "at+jwt", name: value}
        token = jwt.encode(claims, attacker, algorithm="RS256", headers=header)
        _refused_everywhere(server, inspector, token, f"attacker key + {name}")
    for kid in (
        "attacker",
        "",
        "../../../../etc/passwd",
        "' OR '1'='1",
        "\u0000",
        key.kid.upper() if key.kid.upper() != key.kid else key.kid.lower(),
        key.kid + " ",
        "x" * 4000,
    ):
        token = jwt.encode(
            claims, attacker, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"}
        )
        _refused_everywhere(server, inspector, token, f"kid={kid[:20]!r}")
    for kid in (7, None, [key.kid], {"kid": key.kid}):
        header = {"alg": "RS256", "kid": kid, "typ": "at+jwt"}
        token = _raw_rs256(key.backend.prepared_signing_key, header, claims)
        _refused_everywhere(server, inspector, token, f"kid={kid!r}")


def test_issuer_audience_and_time_claims_are_checked(world):
    """RFC 8725 §3.8 (validate issuer and subject), §3.9 (use and validate audience) and RFC 7519
    §4.1.4/§4.1.5: with the server's own key and `typ: at+jwt`, a wrong or missing `iss`, an
    `aud` that is not authserver's API (on the first-party API), an expired or not-yet-valid
    token, and tokens missing `exp`, `iat`, `sub` or `jti` are refused."""
    server, inspector, alice, key = world
    header = {"kid": key.kid, "typ": "at+jwt"}
    base = {"audience": _audience(), "issuer": _issuer(), "sid": alice.sid}
    cases = {
        "foreign iss": {"iss": "https://evil.example"},
        "iss with trailing slash": {"iss": _issuer() + "/"},
        "no iss": {"iss": None},
        "expired": {"exp": 1_000_000_000, "iat": 999_999_000},
        "issued in the future": {"iat": 4_000_000_000, "exp": 4_000_000_300},
        "nbf in the future": {"nbf": 4_000_000_000},
        "exp as a string": {"exp": "9999999999"},
        "no exp": {"exp": None},
        "no iat": {"iat": None},
        "no sub": {"sub": None},
        "empty sub": {"sub": ""},
        "no jti": {"jti": None},
        "no aud": {"aud": None},
        "empty aud list": {"aud": []},
    }
    for what, change in cases.items():
        token = _signed(key, header, claims_for(alice.user, **base, **change))
        _refused_everywhere(server, inspector, token, what)
    # Another API's audience: signed by us, valid, but not for authserver's own API.
    other = _signed(
        key, header, claims_for(alice.user, **{**base, "audience": "https://other.example"})
    )
    me = server.me(other)
    assert me.status_code == 401 and me.json()["error"] == "invalid_token", me.text


def test_oversized_nested_and_malformed_tokens_get_401_not_500(world):
    """RFC 8725 §2.2 (weak input validation) and §3.10: oversized tokens, nested JWTs (a JWS whose
    payload is another JWT, `cty: JWT`), JWE-shaped five-part tokens, headers that are not JSON
    objects and deeply nested JSON get the protocol's 401 or `active: false`, never a 500."""
    server, inspector, alice, key = world
    claims = claims_for(alice.user, audience=_audience(), issuer=_issuer(), sid=alice.sid)
    inner = _signed(key, {"kid": key.kid, "typ": "at+jwt"}, claims)
    nested_payload = b64url(inner.encode())
    nested_header = b64url(
        json.dumps({"alg": key.alg, "kid": key.kid, "typ": "at+jwt", "cty": "JWT"}).encode()
    )
    deep = b64url(b"[" * 3000 + b"]" * 3000)
    cases = {
        "nested JWT, unsigned outer": f"{nested_header}.{nested_payload}.",
        "nested JWT, signed outer": jwt.api_jws.encode(
            inner.encode(),
            key.backend.prepared_signing_key,
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": "at+jwt", "cty": "JWT"},
        ),
        "oversized (64 KiB)": inner + "A" * 65536,
        "oversized claims": _signed(
            key, {"kid": key.kid, "typ": "at+jwt"}, {**claims, "pad": "x" * 20000}
        ),
        "five parts (JWE shape)": ".".join([nested_header, "", b64url(b"iv"), "x", "tag"]),
        "header is a list": b64url(b"[1,2]") + "." + inner.split(".", 1)[1],
        "header is a string": b64url(b'"at+jwt"') + "." + inner.split(".", 1)[1],
        "header deeply nested": deep + "." + inner.split(".", 1)[1],
        "payload not JSON": inner.split(".")[0] + "." + b64url(b"\xff\xfe") + "." + "AAAA",
        "not base64": "!!!.@@@.###",
        "empty parts": "..",
        "unicode": "é.é.é",
        "random": secrets.token_urlsafe(600),
    }
    # In a header, gunicorn itself refuses a line over 8190 bytes (431) before Django runs; in
    # the introspection body the application's own 8 KiB token limit answers.
    refused = (401, 431)
    for what, token in cases.items():
        me = server.me(token)
        assert me.status_code in refused, (what, me.status_code, me.text[:200])
        info = server.userinfo(token)
        assert info.status_code in refused, (what, info.status_code, info.text[:200])
        response = server.form("/oauth/introspect", {"token": token}, auth=inspector.basic())
        assert response.status_code in (200, 413), (what, response.status_code)
        if response.status_code == 200:
            assert response.json() == {"active": False}, what
