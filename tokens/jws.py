"""JWS for authserver's own keys, and PyJWT with its base64url segment check done by a regex.

Two parts:

- `encode`, `parse`, `verify_signature`, `payload_claims`: the compact serialisation of the
  tokens authserver signs and verifies with its own keys (tokens/backends.py). The header
  segment of a key and `typ` is built once, a token is split and decoded once, and the algorithm
  is always the key's. With PyJWT's general-purpose path (options merging, the header decoded
  twice when the caller first reads `kid`, an encoder per call) `access_token_verify` cost 71 µs
  in-process, 21 µs of it the RSA check; now 47 µs (var-free measurement in bench/README.md,
  "Back channel without authlib"). tests/tokens/test_jws.py holds both to
  PyJWT: RS256 tokens byte for byte, and the same accept/refuse verdict and reason on a corpus
  of altered tokens and claims.
- `_JWS`/`get_unverified_header`/`decode`: PyJWT 2.15 rejects a segment holding anything but the
  base64url alphabet by testing every byte in a Python generator (7-8 % of an introspection's
  CPU in py-spy). `_JWS` overrides only that check, with the same rules and errors, and `parse`
  uses the same function. If a PyJWT upgrade renames the hook, the override stops applying and
  PyJWT's own check runs: slower, never weaker. The test of the hook's presence fails first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.api_jws import PyJWS
from jwt.api_jwt import PyJWT
from jwt.exceptions import DecodeError, InvalidTokenError
from jwt.utils import base64url_decode, base64url_encode

from tokens.jwk import PrivateKey, PublicKey

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")


class _JWS(PyJWS):
    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        stripped = segment.rstrip(b"=")
        padding = len(segment) - len(stripped)
        if padding > 2 or (padding and len(segment) % 4 != 0):
            raise DecodeError(f"Invalid {name} padding")
        if len(stripped) % 4 == 1 or _BASE64URL.fullmatch(stripped) is None:
            raise DecodeError(f"Invalid {name} padding")
        try:
            decoded = base64url_decode(stripped)
        except (TypeError, binascii.Error) as err:
            raise DecodeError(f"Invalid {name} padding") from err
        if base64url_encode(decoded) != stripped:
            raise DecodeError(f"Invalid {name} padding")
        return decoded


class _JWT(PyJWT):
    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._jws = _JWS(options=self._get_sig_options())


_jws = _JWS()
_jwt = _JWT()


def get_unverified_header(token: str | bytes) -> dict[str, Any]:
    """jwt.get_unverified_header."""
    return _jws.get_unverified_header(token)


def decode(token: str | bytes, key: Any, **kwargs: Any) -> dict[str, Any]:
    """jwt.decode."""
    return _jwt.decode(token, key, **kwargs)


# --- Compact JWS for authserver's own keys (claim rules: tokens/backends.py) --------------------

_RSA_PADDING = padding.PKCS1v15()
# json.dumps with `separators` would build a new encoder for every token.
_CLAIMS_JSON = json.JSONEncoder(separators=(",", ":"))
_ES256_COORDINATE = 32  # P-256: r and s are 32 octets each in a JWS (RFC 7518 §3.4)


class CompactJws(NamedTuple):
    """A compact JWS split and decoded, before its signature is checked."""

    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def header_segment(*, alg: str, kid: str, typ: str) -> bytes:
    """The protected header of a token signed by key `kid`, as PyJWT writes it (keys sorted)."""
    header = {"alg": alg, "kid": kid, "typ": typ}
    return b64url_encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


def sign(private_key: PrivateKey, alg: str, signing_input: bytes) -> bytes:
    """The JWS signature of `signing_input` (RFC 7518 §3.3 RS256, §3.4 ES256 as r || s)."""
    if alg == "RS256" and isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(signing_input, _RSA_PADDING, hashes.SHA256())
    if alg == "ES256" and isinstance(private_key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_ES256_COORDINATE, "big") + s.to_bytes(_ES256_COORDINATE, "big")
    raise ValueError("the key does not fit the algorithm")


def encode(header: bytes, claims: dict[str, Any], private_key: PrivateKey, alg: str) -> str:
    """A compact JWS of the JSON object `claims` under the prepared `header` segment."""
    if not isinstance(claims, dict):
        raise TypeError("claims must be a dict")
    payload = _CLAIMS_JSON.encode(claims).encode()
    signing_input = header + b"." + b64url_encode(payload)
    signature = sign(private_key, alg, signing_input)
    return (signing_input + b"." + b64url_encode(signature)).decode("ascii")


def verify_signature(public_key: PublicKey, alg: str, jws: CompactJws) -> bool:
    """Whether `jws` carries a valid `alg` signature by `public_key` (alg from the key)."""
    signature = jws.signature
    try:
        if alg == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, jws.signing_input, _RSA_PADDING, hashes.SHA256())
            return True
        if alg == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            if len(signature) != 2 * _ES256_COORDINATE:
                return False
            r = int.from_bytes(signature[:_ES256_COORDINATE], "big")
            s = int.from_bytes(signature[_ES256_COORDINATE:], "big")
            der = encode_dss_signature(r, s)
            public_key.verify(der, jws.signing_input, ec.ECDSA(hashes.SHA256()))
            return True
    except InvalidSignature:
        return False
    return False


def parse(token: str | bytes) -> CompactJws:
    """Split a compact JWS into its decoded parts, checking the form PyJWT checks: three
    segments of canonical base64url (`_JWS._decode_base64url_segment`), a JSON object header
    whose `kid`, if any, is a string. Raises DecodeError or InvalidTokenError. Critical
    extensions (`crit`) and unencoded payloads (RFC 7797 `b64: false`) are refused: authserver
    issues neither."""
    raw = token.encode("utf-8") if isinstance(token, str) else token
    if not isinstance(raw, bytes):
        raise DecodeError("Invalid token type")
    signing_input, dot, signature_segment = raw.rpartition(b".")
    header_b64, dot2, payload_b64 = signing_input.partition(b".")
    if not dot or not dot2:
        raise DecodeError("Not enough segments")
    header_data = _JWS._decode_base64url_segment(header_b64, "header")
    try:
        header = json.loads(header_data)
    except (ValueError, RecursionError) as exc:
        raise DecodeError("Invalid header string") from exc
    if not isinstance(header, dict):
        raise DecodeError("Invalid header string: must be a json object")
    if "kid" in header and not isinstance(header["kid"], str):
        raise InvalidTokenError("Key ID header parameter must be a string")
    if "crit" in header:
        # RFC 7515 §4.1.11: extensions the recipient does not understand must be refused, and
        # authserver understands none (nor issues any).
        raise InvalidTokenError("Unsupported critical extension")
    if header.get("b64", True) is False:
        raise InvalidTokenError("Unencoded payloads are not accepted")
    payload = _JWS._decode_base64url_segment(payload_b64, "payload")
    signature = _JWS._decode_base64url_segment(signature_segment, "crypto")
    return CompactJws(header, signing_input, payload, signature)


def payload_claims(jws: CompactJws) -> dict[str, Any]:
    """The payload as a JSON object (call after the signature checked out)."""
    try:
        claims = json.loads(jws.payload)
    except (ValueError, RecursionError) as exc:
        raise DecodeError("Invalid payload string") from exc
    if not isinstance(claims, dict):
        raise DecodeError("Invalid payload string: must be a json object")
    return claims
