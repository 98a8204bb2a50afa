"""Key material: generation, public JWKs (RFC 7517/7518) and thumbprints (RFC 7638)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# The only members a published key may carry (JWKS adds kid, use and alg).
_PUBLIC_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


class JwkError(ValueError):
    """A stored public JWK is unusable; the message is safe to show to an operator."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise JwkError("not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise JwkError("not base64url text") from exc


def _uint(value: int, length: int | None = None) -> str:
    # RFC 7518 §6.3.1.1: minimal big-endian octets; §6.2.1.2: EC coordinates at full size.
    length = length or max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


def private_key_generate(*, alg: str, rsa_key_size: int = 2048) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported signing algorithm {alg!r}")


def key_size(key: PrivateKey | PublicKey) -> int:
    return key.key_size if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) else 256


def public_jwk(key: PrivateKey | PublicKey) -> dict[str, str]:
    """The public members of `key`, and nothing else."""
    public = key.public_key() if hasattr(key, "private_numbers") else key
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
        numbers = public.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _uint(numbers.x, 32), "y": _uint(numbers.y, 32)}
    raise ValueError("unsupported key type")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, without whitespace."""
    kty = jwk.get("kty")
    members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise JwkError("unsupported kty")
    canonical = json.dumps(
        {name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True
    )
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def public_key_from_jwk(jwk: Any) -> PublicKey:
    """Parse a stored public JWK strictly; raises JwkError if it is not a sound public key."""
    if not isinstance(jwk, dict):
        raise JwkError("not a JSON object")
    kty = jwk.get("kty")
    # A stored row may hold any JSON: a list or object as kty must fail as cleanly as a bad one.
    members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None or set(jwk) != set(members):
        raise JwkError("unexpected members (only public members are stored)")
    try:
        if jwk["kty"] == "RSA":
            n = int.from_bytes(b64url_decode(jwk["n"]), "big")
            e = int.from_bytes(b64url_decode(jwk["e"]), "big")
            if n.bit_length() < 2048 or e < 3 or e % 2 == 0:
                raise JwkError("RSA parameters out of range")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if jwk["crv"] != "P-256":
            raise JwkError("unsupported curve")
        x = b64url_decode(jwk["x"])
        y = b64url_decode(jwk["y"])
        if len(x) != 32 or len(y) != 32:
            raise JwkError("EC coordinates of the wrong size")
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError as exc:  # includes JwkError; cryptography rejects points off the curve
        if isinstance(exc, JwkError):
            raise
        raise JwkError("not a valid public key") from None


def private_key_to_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_der(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("unsupported private key type")
    return key
