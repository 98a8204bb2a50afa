"""tokens.jws: PyJWT with a regex for its base64url segment check (same rules, same errors), and
the compact JWS signer and verifier for authserver's own keys, compared with PyJWT both ways."""

from __future__ import annotations

import base64
import random

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
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


# --- Compact JWS: tokens.jws.encode / parse and SigningKeyBackend.verify against PyJWT ----------

ISSUER = "https://issuer.example"
NOW = 1_800_000_000


def _claims(**overrides):
    base = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": "api",
        "exp": NOW + 300,
        "iat": NOW,
        "jti": "j1",
        "client_id": "app",
        "scope": "a b",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


class _Drop:
    """A claim left out of the token (a stable repr, so every pytest-xdist worker collects the
    same test ids)."""

    def __repr__(self) -> str:
        return "<dropped>"


_DROP = _Drop()


def _raw_token(claims, private, header=None) -> str:
    """An RS256 JWS made with `cryptography` alone (PyJWT's encode refuses some of these claims,
    and tokens.jws is what is being tested)."""
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = header or {"alg": "RS256", "kid": "k1", "typ": "at+jwt"}
    signing_input = (_header_segment(header) + "." + _b64(json.dumps(claims).encode())).encode()
    signature = private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + _b64(signature)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _backend(private, alg):
    from tokens.backends import SigningKeyBackend

    return SigningKeyBackend(
        kid="k1",
        alg=alg,
        verifying_key=private.public_key(),
        signing_key=private,
        issuer=ISSUER,
        leeway=30,
    )


def _pyjwt_reference(token, backend, audience):
    """What SigningKeyBackend.decode did when it was PyJWT's decode (same options), plus the
    checks it made itself."""
    from datetime import UTC, datetime

    from tokens.backends import REQUIRED_CLAIMS

    claims = jwt.decode(
        token,
        backend.verifying_key,
        algorithms=[backend.algorithm],
        audience=audience,
        issuer=backend.issuer,
        options={
            "require": list(REQUIRED_CLAIMS),
            "verify_aud": audience is not None,
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
        },
    )
    if audience is None:
        aud = claims["aud"]
        names = [aud] if isinstance(aud, str) else aud
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise jwt.InvalidAudienceError("invalid audience")
    moment = datetime.fromtimestamp(NOW, tz=UTC).timestamp()
    for name in ("exp", "iat", "nbf"):
        if name in claims and (
            isinstance(claims[name], bool) or not isinstance(claims[name], int | float)
        ):
            raise jwt.InvalidTokenError(name)
    if claims["exp"] <= moment - 30 or claims["iat"] > moment + 30:
        raise jwt.InvalidTokenError("time")
    if "nbf" in claims and claims["nbf"] > moment + 30:
        raise jwt.InvalidTokenError("time")
    return claims


def _verdict(decode):
    """("ok", claims) or the reason tokens.verification would give for the exception."""
    try:
        return ("ok", decode())
    except jwt.ExpiredSignatureError:
        return ("refused", "time")
    except jwt.ImmatureSignatureError:
        return ("refused", "time")
    except jwt.MissingRequiredClaimError as exc:
        return ("refused", f"missing {exc.claim}")
    except jwt.InvalidAudienceError:
        return ("refused", "audience")
    except jwt.InvalidIssuerError:
        return ("refused", "issuer")
    except jwt.InvalidSignatureError:
        return ("refused", "signature")
    except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        reason = "time" if str(exc) == "time" else "invalid"
        return ("refused", reason)


def _ours(token, backend, audience):
    from datetime import UTC, datetime

    return backend.decode(token, audience=audience, now=datetime.fromtimestamp(NOW, tz=UTC))


CLAIM_VARIANTS = [
    {},
    {"iss": _DROP},
    {"iss": None},
    {"iss": "https://evil.example"},
    {"iss": 5},
    {"sub": _DROP},
    {"sub": 5},
    {"sub": ""},
    {"aud": _DROP},
    {"aud": ""},
    {"aud": []},
    {"aud": ["x", "api"]},
    {"aud": ["x"]},
    {"aud": ["api", ""]},
    {"aud": [1]},
    {"aud": {"api": 1}},
    {"aud": "other"},
    {"exp": _DROP},
    {"exp": None},
    {"exp": "soon"},
    {"exp": True},
    {"exp": NOW - 31},
    {"exp": NOW - 29},
    {"exp": 1.5e300},
    {"iat": _DROP},
    {"iat": NOW + 31},
    {"iat": [1]},
    {"nbf": NOW + 31},
    {"nbf": NOW},
    {"nbf": "x"},
    {"jti": _DROP},
    {"jti": 7},
    {"jti": ""},
]


@pytest.mark.parametrize("audience", [None, "api", ["nope", "api"], "other"])
@pytest.mark.parametrize("variant", CLAIM_VARIANTS, ids=str)
def test_claim_rules_match_pyjwt(rsa_private_key_pem_pair, audience, variant):
    private, _ = rsa_private_key_pem_pair
    backend = _backend(private, "RS256")
    token = _raw_token(_claims(**variant), private)
    assert _verdict(lambda: _ours(token, backend, audience)) == _verdict(
        lambda: _pyjwt_reference(token, backend, audience)
    )


def _mutations(token: str):
    header, payload, signature = token.split(".")
    yield token
    yield f"{header}.{payload}"
    yield f"{header}.{payload}.{signature}.x"
    yield f"{header}.{payload}."
    yield f"{header}.{payload}.{signature}="
    yield f"{header}=.{payload}.{signature}"
    yield f"{header}.{payload}.{signature[:-1]}"
    yield f"{header}.{payload}x.{signature}"
    yield f"{header}.{payload[:-1]}.{signature}"
    yield f".{payload}.{signature}"
    yield f"{header}..{signature}"
    yield token.replace(".", "..", 1)
    forged = base64.urlsafe_b64encode(b'{"sub":"admin"}').rstrip(b"=").decode()
    yield f"{header}.{forged}.{signature}"
    rng = random.Random(11)
    for _ in range(150):
        chars = list(token)
        i = rng.randrange(len(chars))
        chars[i] = rng.choice(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/"
        )
        yield "".join(chars)


def _header_segment(header: dict) -> str:
    import json

    return base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()


def _headers(private):
    """Tokens whose header differs from ours, signed with the real key where that matters."""
    good = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": "k1"})
    _, payload, signature = good.split(".")
    for header in (
        {"alg": "none", "kid": "k1"},
        {"alg": "HS256", "kid": "k1"},
        {"alg": "RS512", "kid": "k1"},
        {"kid": "k1"},
        {"alg": "RS256", "kid": 5},
        [1, 2],
        "RS256",
    ):
        yield f"{_header_segment(header)}.{payload}.{signature}"
    for header in ({"alg": "RS256", "kid": "k1", "x": [1]}, {"alg": "RS256"}):
        yield jwt.encode(_claims(), private, algorithm="RS256", headers=header)
    yield jwt.encode(_claims(), "s" * 32, algorithm="HS256", headers={"kid": "k1"})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    yield jwt.encode(_claims(), other, algorithm="RS256", headers={"kid": "k1"})


def test_parse_and_signature_rules_match_pyjwt(rsa_private_key_pem_pair):
    private, _ = rsa_private_key_pem_pair
    backend = _backend(private, "RS256")
    good = jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": "k1"})
    differences = [
        token
        for token in [*_mutations(good), *_headers(private)]
        if _verdict(lambda t=token: _ours(t, backend, "api"))
        != _verdict(lambda t=token: _pyjwt_reference(t, backend, "api"))
    ]
    assert differences == []


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "kid": "k1", "crit": ["exp"]},
        {"alg": "RS256", "kid": "k1", "crit": ["b64"], "b64": True},
        {"alg": "RS256", "kid": "k1", "b64": False},
    ],
)
def test_critical_extensions_and_unencoded_payloads_are_refused(rsa_private_key_pem_pair, header):
    """Stricter than PyJWT, which accepts crit ["b64"] with b64 true: authserver issues no
    extension, so a token naming one is not ours."""
    private, _ = rsa_private_key_pem_pair
    payload = base64.urlsafe_b64encode(b'{"sub":"x"}').rstrip(b"=")
    signing_input = _header_segment(header).encode() + b"." + payload
    token = (
        signing_input
        + b"."
        + base64.urlsafe_b64encode(jws.sign(private, "RS256", signing_input)).rstrip(b"=")
    ).decode()
    with pytest.raises(jwt.InvalidTokenError):
        jws.parse(token)


def test_rs256_tokens_are_byte_for_byte_what_pyjwt_writes(rsa_private_key_pem_pair):
    """PKCS#1 v1.5 signatures are deterministic: same header, claims and key, same token."""
    private, _ = rsa_private_key_pem_pair
    claims = _claims(aud=["a", "b"], scope="x y", extra={"nested": [1, "é"]})
    ours = jws.encode(
        jws.header_segment(alg="RS256", kid="k1", typ="at+jwt"), claims, private, "RS256"
    )
    theirs = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1", "typ": "at+jwt"})
    assert ours == theirs
    assert _backend(private, "RS256").encode(claims, typ="at+jwt") == theirs


def test_es256_tokens_verify_both_ways():
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    backend = _backend(private, "ES256")
    ours = backend.encode(_claims(), typ="at+jwt")
    assert jwt.get_unverified_header(ours) == {"alg": "ES256", "kid": "k1", "typ": "at+jwt"}
    assert len(jws.parse(ours).signature) == 64
    options = {"verify_iat": False, "verify_exp": False}
    assert jwt.decode(
        ours, private.public_key(), algorithms=["ES256"], audience="api", options=options
    )["sub"]
    theirs = jwt.encode(_claims(), private, algorithm="ES256", headers={"kid": "k1"})
    assert _ours(theirs, backend, "api")["sub"] == "user-1"
    header, payload, signature = theirs.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    for bad in (raw[:-1], raw + b"\x00", raw[32:] + raw[:32], b"\x00" * 64):
        token = f"{header}.{payload}." + base64.urlsafe_b64encode(bad).rstrip(b"=").decode()
        assert _verdict(lambda t=token: _ours(t, backend, "api")) == ("refused", "signature")


def test_a_key_signs_only_with_its_own_algorithm(rsa_private_key_pem_pair):
    from cryptography.hazmat.primitives.asymmetric import ec

    private, _ = rsa_private_key_pem_pair
    with pytest.raises(ValueError, match="does not fit"):
        jws.sign(private, "ES256", b"x")
    with pytest.raises(ValueError, match="does not fit"):
        jws.sign(ec.generate_private_key(ec.SECP256R1()), "RS256", b"x")
    assert not jws.verify_signature(
        private.public_key(),
        "ES256",
        jws.parse(jwt.encode(_claims(), private, algorithm="RS256", headers={"kid": "k1"})),
    )
