"""PyJWT, with its check of each base64url segment done by one regex match.

PyJWT 2.15 rejects a segment holding anything but the base64url alphabet by testing every byte in
a Python generator. Verifying one of our access tokens runs that check over ~1,700 bytes (the
header is read twice: once to find the key by `kid`, once to verify), and py-spy put it at 7-8 %
of an introspection's CPU. `_JWS` overrides only that check, with the same rules and the same
errors (tests/tokens/test_jws.py compares the two on edge cases and random input); everything
else, signature verification and claim checks included, is PyJWT's own code.

If a PyJWT upgrade renames the hook, the override stops applying and PyJWT's own check runs: slower,
never weaker. The test of the hook's presence fails first.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

from jwt.api_jws import PyJWS
from jwt.api_jwt import PyJWT
from jwt.exceptions import DecodeError
from jwt.utils import base64url_decode, base64url_encode

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
