"""access_token_verify: everything that must fail does, with a short reason and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.tokens.conftest import AUDIENCE, active_private_key, b64, forge, public_pem, unsigned
from tokens.issuance import access_token_issue
from tokens.jwk import public_jwk
from tokens.rotation import signing_key_revoke, signing_key_rotate
from tokens.verification import TokenInvalid, access_token_verify

pytestmark = pytest.mark.django_db


def claims(**overrides):
    now = int(timezone.now().timestamp())
    base = {
        "iss": "http://testserver",
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now + 300,
        "iat": now,
        "jti": "j1",
        "client_id": "app",
        "scope": "",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def header(signing_key, **overrides):
    base = {"alg": "RS256", "kid": signing_key.kid, "typ": "at+jwt"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def reason(token, **kwargs) -> str:
    with pytest.raises(TokenInvalid) as caught:
        access_token_verify(token, audience=AUDIENCE, **kwargs)
    return caught.value.reason


def test_a_token_signed_with_the_active_key_verifies(signing_key):
    token = forge(header(signing_key), claims(), key=active_private_key())
    assert access_token_verify(token, audience=AUDIENCE)["sub"] == "user-1"
    assert access_token_verify(token.encode(), audience=AUDIENCE)["jti"] == "j1"


def test_default_audience_is_the_setting(settings, signing_key):
    token = forge(
        header(signing_key), claims(aud=settings.AUTHSERVER_DEFAULT_AUDIENCE), active_private_key()
    )
    assert access_token_verify(token)["sub"] == "user-1"
    assert settings.AUTHSERVER_DEFAULT_AUDIENCE == "http://testserver/api"


def test_expired_token_fails_after_the_leeway(settings):
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="app", lifetime=60)
    leeway = settings.AUTHSERVER_TOKEN_LEEWAY
    just_inside = issued.expires_at + timedelta(seconds=leeway - 1)
    assert access_token_verify(issued.token, audience=AUDIENCE, now=just_inside)
    assert reason(issued.token, now=issued.expires_at + timedelta(seconds=leeway)) == (
        "token expired"
    )


def test_token_issued_in_the_future_fails(signing_key, settings):
    later = int(timezone.now().timestamp()) + settings.AUTHSERVER_TOKEN_LEEWAY + 5
    token = forge(header(signing_key), claims(iat=later, exp=later + 60), active_private_key())
    assert reason(token) == "token not yet valid"
    not_before = forge(header(signing_key), claims(nbf=later), active_private_key())
    assert reason(not_before) == "token not yet valid"


def test_wrong_audience_and_wrong_issuer_fail(signing_key):
    assert reason(forge(header(signing_key), claims(aud="other"), active_private_key())) == (
        "wrong audience"
    )
    assert reason(
        forge(header(signing_key), claims(iss="https://evil.example"), active_private_key())
    ) == ("wrong issuer")


def test_tampered_payload_and_signature_fail(signing_key):
    token = forge(header(signing_key), claims(), active_private_key())
    head, payload, signature = token.split(".")
    swapped = b64(json.dumps(claims(sub="admin")).encode())
    assert reason(f"{head}.{swapped}.{signature}") == "bad signature"
    flipped = signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")
    assert reason(f"{head}.{payload}.{flipped}") == "bad signature"


def test_alg_none_fails(signing_key):
    for alg in ("none", "None", "NONE"):
        assert reason(unsigned(header(signing_key, alg=alg), claims())) == (
            "algorithm does not match the signing key"
        )


def test_hs256_signed_with_the_public_key_as_hmac_secret_fails(signing_key):
    for secret in (public_pem(), json.dumps(public_jwk(active_private_key())).encode()):
        signing_input = (
            b64(json.dumps(header(signing_key, alg="HS256")).encode())
            + "."
            + b64(json.dumps(claims()).encode())
        )
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert reason(signing_input + "." + b64(mac)) == "algorithm does not match the signing key"


def test_unknown_missing_or_non_string_kid_fails(signing_key):
    assert reason(forge(header(signing_key, kid="nope"), claims())) == "unknown signing key"
    assert reason(forge(header(signing_key, kid=None), claims(), active_private_key())) == (
        "missing key id"
    )
    bad_kid = forge(header(signing_key, kid=None), claims(), active_private_key())
    head = json.loads(base64.urlsafe_b64decode(bad_kid.split(".")[0] + "=="))
    head["kid"] = 42
    crafted = b64(json.dumps(head).encode()) + "." + bad_kid.split(".", 1)[1]
    assert reason(crafted) == "malformed token"


@pytest.mark.parametrize("parameter", ["jku", "x5u", "jwk", "x5c", "crit"])
def test_header_parameters_pointing_at_other_keys_fail(signing_key, parameter):
    values = {
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "jwk": public_jwk(active_private_key()),
        "x5c": ["MIIB"],
        "crit": ["exp"],
    }
    # Even signed with the real key, the parameter alone is refused.
    token = forge(
        header(signing_key, **{parameter: values[parameter]}), claims(), active_private_key()
    )
    # PyJWT itself refuses a crit it does not understand before we look at the header.
    assert reason(token) in {"unsupported header parameter", "malformed token"}


def test_embedded_attacker_jwk_is_never_used(signing_key):
    from cryptography.hazmat.primitives.asymmetric import rsa

    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for kid in (signing_key.kid, "attacker"):
        token = forge({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, claims(), key=attacker)
        assert reason(token) in {"bad signature", "unknown signing key"}


def test_only_access_token_typ_is_accepted(signing_key):
    for typ in ("JWT", "jwt", None, "at+JWT-ish", "id_token"):
        # (typ None: PyJWT writes its default typ "JWT")
        token = forge(header(signing_key, typ=typ), claims(), active_private_key())
        assert reason(token) == "not an access token"
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt"):
        token = forge(header(signing_key, typ=typ), claims(), active_private_key())
        assert access_token_verify(token, audience=AUDIENCE)


@pytest.mark.parametrize("missing", ["iss", "sub", "aud", "exp", "iat", "jti"])
def test_required_claims(signing_key, missing):
    token = forge(header(signing_key), claims(**{missing: None}), active_private_key())
    assert reason(token) == f"missing claim {missing}"


@pytest.mark.parametrize(
    "bad",
    [{"sub": ""}, {"sub": 5}, {"jti": ""}, {"exp": "soon"}, {"exp": True}, {"iat": [1]}],
)
def test_claims_of_the_wrong_type_fail(signing_key, bad):
    token = forge(header(signing_key), claims(**bad), active_private_key())
    assert reason(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "...",
        "!!!.???.###",
        "e30.e30.",
        b64(b"[1,2]") + ".e30.sig",
        b64(b'{"alg":"RS256"') + ".e30.sig",
        b64(b"\xff\xfe") + ".e30.sig",
        "x" * 9000,
        "é.é.é",
        b"\xff\xfe.a.b",
        None,
        42,
    ],
)
def test_malformed_tokens_raise_token_invalid_only(db, token):
    with pytest.raises(TokenInvalid):
        access_token_verify(token, audience=AUDIENCE)


def test_retired_key_verifies_until_removed_and_revoked_key_never(signing_key):
    now = timezone.now()
    old = access_token_issue(subject="s", audience=AUDIENCE, client_id="app", now=now)
    signing_key_rotate(now=now, immediate=True)
    new = access_token_issue(subject="s", audience=AUDIENCE, client_id="app", now=now)
    assert new.kid != old.kid
    assert access_token_verify(old.token, audience=AUDIENCE, now=now)
    assert access_token_verify(new.token, audience=AUDIENCE, now=now)
    signing_key_revoke(kid=old.kid, now=now)
    assert reason(old.token, now=now) == "unknown signing key"
    assert access_token_verify(new.token, audience=AUDIENCE, now=now)
