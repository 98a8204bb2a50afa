"""access_token_verify(audience=ANY_AUDIENCE): the authorization server reading its own tokens
accepts whichever audience they name, and checks everything else."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from tokens.issuance import access_token_issue, jwt_sign
from tokens.verification import ANY_AUDIENCE, TokenInvalid, access_token_verify

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("audience", ["https://api.one", ["https://api.one", "https://api.two"]])
def test_any_audience_is_accepted(audience):
    token = access_token_issue(subject="s", audience=audience, client_id="c").token
    claims = access_token_verify(token, audience=ANY_AUDIENCE)
    assert claims["aud"] == audience
    with pytest.raises(TokenInvalid, match="wrong audience"):
        access_token_verify(token, audience="https://elsewhere")


def test_any_audience_still_checks_signature_and_expiry():
    token = access_token_issue(subject="s", audience="https://api.one", client_id="c").token
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(TokenInvalid):
        access_token_verify(forged, audience=ANY_AUDIENCE)
    expired = access_token_issue(
        subject="s", audience="https://api.one", client_id="c", lifetime=60
    ).token
    with pytest.raises(TokenInvalid, match="expired"):
        access_token_verify(
            expired, audience=ANY_AUDIENCE, now=timezone.now() + timedelta(seconds=3600)
        )


@pytest.mark.parametrize("aud", [None, "", [], [""], [7]])
def test_any_audience_still_requires_a_proper_aud_claim(aud):
    now = int(time.time())
    claims = {"iss": settings.AUTHSERVER_ISSUER, "sub": "s", "exp": now + 60, "iat": now}
    claims["jti"] = "j"
    if aud is not None:
        claims["aud"] = aud
    token = jwt_sign(claims=claims, typ="at+jwt")
    with pytest.raises(TokenInvalid):
        access_token_verify(token, audience=ANY_AUDIENCE)
