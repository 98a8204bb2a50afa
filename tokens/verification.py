"""Verifying authserver access tokens (RFC 9068 §4) against the published keys.

The verifier trusts nothing in the token's header except `kid`, which only selects among keys
this server publishes: the algorithm is pinned to that key's, and header parameters that point at
other keys (`jku`, `x5u`, `jwk`, `x5c`) are refused outright.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jwt
from django.utils import timezone

from authserver.conf import get_config
from tokens import jws
from tokens.keys import published_key

MAX_TOKEN_LENGTH = 8192
ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})
REFUSED_HEADER_PARAMETERS = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})


class _AnyAudience:
    def __repr__(self) -> str:
        return "ANY_AUDIENCE"


# For the authorization server reading its own tokens (introspection, revocation): accept
# whatever audience the token names, checking everything else. Saves decoding the token a
# second time just to read its `aud` (PyJWT checks every base64 character in Python).
ANY_AUDIENCE = _AnyAudience()


class TokenInvalid(Exception):
    """The token must not be accepted; `reason` is short and safe to send back to the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _parsed(token: str | bytes) -> jws.CompactJws:
    if isinstance(token, bytes | bytearray):
        try:
            token = bytes(token).decode("ascii")
        except UnicodeDecodeError:
            raise TokenInvalid("malformed token") from None
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("malformed token")
    if token.count(".") != 2:
        raise TokenInvalid("malformed token")
    try:
        return jws.parse(token)
    # RecursionError: a header of nested brackets (json recurses per level; issue 14.5).
    except (jwt.InvalidTokenError, ValueError, TypeError, RecursionError):
        raise TokenInvalid("malformed token") from None


def access_token_verify(
    token: str | bytes,
    *,
    audience: str | Sequence[str] | _AnyAudience | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The claims of a valid access token for `audience` (default AUTHSERVER_DEFAULT_AUDIENCE;
    ANY_AUDIENCE: whichever it names).

    Raises TokenInvalid for anything else, and KeyStoreUnavailable if the key store cannot be
    read at all.
    """
    now = now or timezone.now()
    parsed = _parsed(token)
    header = parsed.header
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
        raise TokenInvalid("not an access token")
    if REFUSED_HEADER_PARAMETERS.intersection(header):
        raise TokenInvalid("unsupported header parameter")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenInvalid("missing key id")
    key = published_key(kid, now)
    if key is None:
        raise TokenInvalid("unknown signing key")
    if header.get("alg") != key.alg:
        raise TokenInvalid("algorithm does not match the signing key")

    if audience is None:
        audience = get_config().default_audience
    if audience is ANY_AUDIENCE:
        expected = None
    else:
        expected = audience if isinstance(audience, str) else list(audience)
    try:
        claims = key.backend.verify(parsed, audience=expected, now=now)
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("token expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenInvalid("token not yet valid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenInvalid(f"missing claim {exc.claim}") from None
    except jwt.InvalidAudienceError:
        raise TokenInvalid("wrong audience") from None
    except jwt.InvalidIssuerError:
        raise TokenInvalid("wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise TokenInvalid("bad signature") from None
    except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError, RecursionError):
        raise TokenInvalid("invalid token") from None
    for name in ("sub", "jti"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise TokenInvalid(f"invalid claim {name}")
    return claims
