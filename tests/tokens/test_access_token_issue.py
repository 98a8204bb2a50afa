"""access_token_issue / jwt_sign: RFC 9068 header and claims, lifetimes, argument checks."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.utils import timezone

from tests.tokens.conftest import AUDIENCE
from tokens.issuance import IssuedAccessToken, access_token_issue, jwt_sign
from tokens.verification import access_token_verify

pytestmark = pytest.mark.django_db


def test_header_carries_alg_kid_and_at_jwt_typ(signing_key):
    issued = access_token_issue(subject="user-1", audience=AUDIENCE, client_id="app")
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "RS256", "kid": signing_key.kid, "typ": "at+jwt"}
    assert issued.kid == signing_key.kid


def test_claims_follow_rfc_9068(settings):
    now = timezone.now().replace(microsecond=0)
    issued = access_token_issue(
        subject="user-1",
        audience=AUDIENCE,
        client_id="app",
        scope="read  write",
        session_id="0d4e6f5c-1111-4222-8333-944455556666",
        now=now,
    )
    claims = access_token_verify(issued.token, audience=AUDIENCE, now=now)
    assert claims == {
        "iss": settings.AUTHSERVER_ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": int(now.timestamp()) + 600,
        "iat": int(now.timestamp()),
        "jti": issued.jti,
        "client_id": "app",
        "scope": "read write",
        "sid": "0d4e6f5c-1111-4222-8333-944455556666",
    }
    assert issued.expires_in == 600
    assert issued.expires_at == now + timedelta(seconds=600)


def test_default_lifetime_is_the_access_token_ttl_setting(settings):
    settings.AUTHSERVER_ACCESS_TOKEN_TTL = 120
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="app")
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120 == issued.expires_in


def test_explicit_lifetime_and_several_audiences():
    issued = access_token_issue(subject="s", audience=["a", "b"], client_id="app", lifetime=60)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims["aud"] == ["a", "b"]
    assert claims["exp"] - claims["iat"] == 60
    assert access_token_verify(issued.token, audience="b")["sub"] == "s"


def test_no_sid_claim_without_a_session():
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="app")
    assert "sid" not in jwt.decode(issued.token, options={"verify_signature": False})


def test_every_token_gets_a_fresh_jti():
    jtis = {
        access_token_issue(subject="s", audience=AUDIENCE, client_id="app").jti for _ in range(20)
    }
    assert len(jtis) == 20


def test_extra_claims_are_added_but_cannot_override_registered_ones():
    issued = access_token_issue(
        subject="s", audience=AUDIENCE, client_id="app", extra_claims={"acr": "1"}
    )
    assert jwt.decode(issued.token, options={"verify_signature": False})["acr"] == "1"
    for name in ("iss", "sub", "aud", "exp", "jti", "scope", "sid", "client_id"):
        with pytest.raises(ValueError, match=name):
            access_token_issue(
                subject="s", audience=AUDIENCE, client_id="app", extra_claims={name: "x"}
            )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": ""},
        {"subject": None},
        {"audience": ""},
        {"audience": []},
        {"audience": ["ok", ""]},
        {"audience": b"bytes"},
        {"client_id": ""},
        {"scope": None},
        {"lifetime": 0},
        {"lifetime": -5},
        {"lifetime": True},
        {"lifetime": 10**9},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    arguments = {"subject": "s", "audience": AUDIENCE, "client_id": "app", **kwargs}
    with pytest.raises(ValueError):
        access_token_issue(**arguments)


def test_repr_never_contains_the_token():
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="app")
    assert issued.token not in repr(issued)
    assert isinstance(issued, IssuedAccessToken)


def test_jwt_sign_uses_the_same_key_and_the_given_typ(signing_key):
    now = timezone.now()
    token = jwt_sign(claims={"sub": "s", "exp": int(now.timestamp()) + 300}, typ="JWT")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "kid": signing_key.kid, "typ": "JWT"}
    public = signing_key.backend.verifying_key
    assert jwt.decode(token, public, algorithms=["RS256"])["sub"] == "s"


def test_jwt_sign_refuses_tokens_that_would_outlive_a_retired_key(settings):
    now = timezone.now()
    too_far = int(now.timestamp()) + settings.AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME + 60
    with pytest.raises(ValueError, match="MAX_LIFETIME"):
        jwt_sign(claims={"sub": "s", "exp": too_far})
    with pytest.raises(ValueError, match="exp"):
        jwt_sign(claims={"sub": "s"})


def test_es256_keys_sign_and_verify(settings):
    settings.AUTHSERVER_SIGNING_ALG = "ES256"
    issued = access_token_issue(subject="s", audience=AUDIENCE, client_id="app")
    assert jwt.get_unverified_header(issued.token)["alg"] == "ES256"
    assert access_token_verify(issued.token, audience=AUDIENCE)["sub"] == "s"
