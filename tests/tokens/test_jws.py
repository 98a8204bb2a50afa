"""tokens.jws: PyJWT with a regex for its base64url segment check. Same rules, same errors."""

from __future__ import annotations

import base64
import random

import jwt
import pytest
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError

from tokens import jws

EDGE_CASES = [
    b"", b"A", b"QQ", b"QR", b"QQ=", b"QQ==", b"QQ===", b"QUI", b"QUI=", b"QUJD", b"QUJD=",
    b"Q===", b"=", b"==", b"a+b/", b"ab!!", b"!!!!", b"ab cd", b"ab\ncd", b"ab\x00c", b"\xff\xfe",
    b"eyJhbGciOiJSUzI1NiJ9", b"eyJhbGciOiJSUzI1NiJ9=", b"-_-_", b"____", b"AAAAA", b"QUJDRA==",
    b"QUJDRA=", b"QUJDRB", b"QUJDRA", "é".encode(), b"A=A=",
]  # fmt: skip


def outcome(decode, segment: bytes):
    try:
        return ("ok", decode(segment, "payload"))
    except DecodeError as exc:
        return ("error", str(exc))


def random_segments(count: int):
    rng = random.Random(7)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    junk = b"=+/!. \n\x00\x7f\xc3"
    for _ in range(count):
        length = rng.randrange(0, 24)
        chars = alphabet if rng.random() < 0.6 else alphabet + junk
        yield bytes(rng.choice(chars) for _ in range(length)) + b"=" * rng.choice((0, 0, 1, 2, 3))
    for _ in range(count):
        raw = rng.randbytes(rng.randrange(0, 40))
        yield base64.urlsafe_b64encode(raw).rstrip(b"=") + b"=" * rng.choice((0, 1, 2))


@pytest.mark.parametrize("segment", EDGE_CASES)
def test_segment_check_matches_pyjwt_on_edge_cases(segment):
    assert outcome(jws._JWS._decode_base64url_segment, segment) == outcome(
        PyJWS._decode_base64url_segment, segment
    )


def test_segment_check_matches_pyjwt_on_random_input():
    differences = [
        segment
        for segment in random_segments(3000)
        if outcome(jws._JWS._decode_base64url_segment, segment)
        != outcome(PyJWS._decode_base64url_segment, segment)
    ]
    assert differences == []


def test_the_overridden_hook_still_exists_in_pyjwt():
    # An upgrade that renames it would leave our override unused (PyJWT's check runs instead).
    assert "_decode_base64url_segment" in PyJWS.__dict__
    assert jws._jwt._jws.__class__ is jws._JWS


def test_decode_uses_the_override_and_still_verifies(rsa_private_key_pem_pair):
    private, public = rsa_private_key_pem_pair
    token = jwt.encode({"sub": "x", "iss": "i"}, private, algorithm="RS256", headers={"kid": "k"})
    assert jws.get_unverified_header(token)["kid"] == "k"
    assert jws.decode(token, public, algorithms=["RS256"], issuer="i")["sub"] == "x"
    header, payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"sub":"y","iss":"i"}').rstrip(b"=").decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jws.decode(f"{header}.{forged}.{signature}", public, algorithms=["RS256"])
    with pytest.raises(DecodeError):
        jws.decode(f"{header}.{payload}!.{signature}", public, algorithms=["RS256"])
    with pytest.raises(jwt.InvalidAlgorithmError):
        jws.decode(token, public, algorithms=["HS256"])


@pytest.fixture(scope="module")
def rsa_private_key_pem_pair():
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, key.public_key()
