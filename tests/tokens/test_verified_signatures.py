"""A key's memo of verified signatures (tokens/backends.py): a token already verified skips the
public-key operation and nothing else; only a passing verdict is kept, for exactly the bytes that
were verified, by the key that verified them, and no longer than that key's snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.tokens.conftest import AUDIENCE, b64
from tokens import backends, jws
from tokens.issuance import access_token_issue
from tokens.keys import keyring_reset_snapshot, published_key
from tokens.rotation import signing_key_revoke, signing_key_rotate
from tokens.verification import TokenInvalid, access_token_verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def rsa_checks(monkeypatch):
    """How many times the public-key operation ran (the real one: it is counted, not replaced)."""
    calls = []
    real = jws.verify_signature

    def counted(public_key, alg, token):
        calls.append(token.signing_input)
        return real(public_key, alg, token)

    monkeypatch.setattr(jws, "verify_signature", counted)
    return calls


def issue(**kw) -> str:
    return access_token_issue(subject="s", audience=AUDIENCE, client_id="app", **kw).token


def test_a_token_verified_once_skips_the_public_key_operation_after(signing_key, rsa_checks):
    token, other = issue(), issue()
    for _ in range(3):
        assert access_token_verify(token, audience=AUDIENCE)["sub"] == "s"
    assert len(rsa_checks) == 1
    access_token_verify(other, audience=AUDIENCE)
    assert len(rsa_checks) == 2  # another token is checked in full


def test_a_failed_signature_is_never_remembered(signing_key, rsa_checks):
    head, payload, signature = issue().split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    for _ in range(3):
        with pytest.raises(TokenInvalid, match="bad signature"):
            access_token_verify(forged, audience=AUDIENCE)
    assert len(rsa_checks) == 3


def test_the_remembered_signature_on_other_bytes_is_refused(signing_key):
    """The genuine signature glued to a changed payload, after the genuine token was verified
    (and remembered): refused."""
    token = issue()
    access_token_verify(token, audience=AUDIENCE)
    head, _, signature = token.split(".")
    payload = jws.parse(token).payload
    changed = payload.replace(b'"sub":"s"', b'"sub":"t"')
    assert changed != payload
    with pytest.raises(TokenInvalid, match="bad signature"):
        access_token_verify(f"{head}.{b64(changed)}.{signature}", audience=AUDIENCE)


def test_no_other_split_of_the_same_bytes_is_taken_for_a_remembered_token(signing_key):
    """The digest covers the signed bytes' length: the same bytes cut elsewhere between signing
    input and signature (which parse() would not produce, but verify() must not rely on) do not
    match the remembered entry."""
    parsed = jws.parse(issue())
    key = published_key(parsed.header["kid"])
    key.backend.verify(parsed, audience=AUDIENCE, now=timezone.now())
    shifted = jws.CompactJws(
        parsed.header,
        parsed.signing_input[:-3],
        parsed.payload,
        parsed.signing_input[-3:] + parsed.signature,
    )
    assert shifted.signing_input + shifted.signature == parsed.signing_input + parsed.signature
    assert not key.backend._signature_valid(shifted)


def test_a_remembered_token_still_expires_and_still_names_its_audience(signing_key, rsa_checks):
    now = timezone.now()
    token = issue(now=now, lifetime=60)
    access_token_verify(token, audience=AUDIENCE, now=now)
    with pytest.raises(TokenInvalid, match="wrong audience"):
        access_token_verify(token, audience="https://elsewhere", now=now)
    with pytest.raises(TokenInvalid, match="expired"):
        access_token_verify(token, audience=AUDIENCE, now=now + timedelta(hours=1))
    assert len(rsa_checks) == 1  # both refusals came from the claims, on a remembered token


def test_a_remembered_token_of_a_revoked_key_is_refused(signing_key):
    now = timezone.now()
    old = issue(now=now)
    signing_key_rotate(now=now, immediate=True)
    assert access_token_verify(old, audience=AUDIENCE, now=now)
    signing_key_revoke(kid=jws.parse(old).header["kid"], now=now)
    with pytest.raises(TokenInvalid, match="unknown signing key"):
        access_token_verify(old, audience=AUDIENCE, now=now)


def test_the_memo_is_the_snapshots_and_a_reload_starts_it_afresh(signing_key, rsa_checks):
    token = issue()
    access_token_verify(token, audience=AUDIENCE)
    access_token_verify(token, audience=AUDIENCE)
    assert len(rsa_checks) == 1
    keyring_reset_snapshot()
    access_token_verify(token, audience=AUDIENCE)
    assert len(rsa_checks) == 2


def test_the_memo_is_bounded_and_forgets_the_oldest_first(signing_key, monkeypatch, rsa_checks):
    monkeypatch.setattr(backends, "VERIFIED_MEMO_SIZE", 8)
    tokens = [issue() for _ in range(12)]
    for token in tokens:
        access_token_verify(token, audience=AUDIENCE)
    backend = published_key(jws.parse(tokens[0]).header["kid"]).backend
    assert len(backend._verified) <= 8
    del rsa_checks[:]
    access_token_verify(tokens[-1], audience=AUDIENCE)  # the newest are remembered
    assert rsa_checks == []
    access_token_verify(tokens[0], audience=AUDIENCE)  # the oldest were forgotten
    assert len(rsa_checks) == 1
