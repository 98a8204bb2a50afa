"""Signing tokens: the one place where authserver produces a JWS.

Access tokens follow RFC 9068 (JWT Profile for OAuth 2.0 Access Tokens): header `typ: at+jwt`,
`alg` and `kid` of the active key; claims iss, sub, aud, exp, iat, jti, client_id, scope and
`sid` when the token belongs to a session.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from authserver.conf import get_config
from tokens.keys import active_signing_key

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret
# The client id of tokens the operator mints with `manage.py issue_access_token` (its default):
# not an OAuth client, and whoever can run the command holds the signing keys anyway.
OPERATOR_CLIENT_ID = "authserver-cli"
# Claims set by access_token_issue itself; extra_claims may not replace them.
RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "sid"}
)


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_in: int
    expires_at: datetime
    kid: str

    def __repr__(self) -> str:  # never the token itself
        return (
            f"IssuedAccessToken(jti={self.jti!r}, kid={self.kid!r}, expires_in={self.expires_in})"
        )


def _audience(audience: str | Sequence[str]) -> str | list[str]:
    if isinstance(audience, str):
        values = [audience]
    elif isinstance(audience, Sequence) and not isinstance(audience, bytes):
        values = list(audience)
    else:
        raise ValueError("audience must be a string or a sequence of strings")
    if not values or any(not isinstance(v, str) or not v.strip() for v in values):
        raise ValueError("audience must name at least one non-empty audience")
    return values[0] if len(values) == 1 else values


def jwt_sign(*, claims: Mapping[str, Any], typ: str = "JWT", now: datetime | None = None) -> str:
    """Sign `claims` with the active key (header alg, kid, typ). For ID tokens and the like.

    `exp` is required and may lie at most AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME ahead: a retired
    key stays published exactly that long (plus leeway), so no token outlives its key.
    Raises KeyStoreUnavailable (503) when no key can sign.
    """
    now = now or timezone.now()
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise ValueError("claims must carry an integer exp")
    if exp - now.timestamp() > get_config().signed_token_max_lifetime:
        raise ValueError("exp lies beyond AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME")
    return active_signing_key(now).backend.encode(dict(claims), typ=typ)


def access_token_issue(
    *,
    subject: str,
    audience: str | Sequence[str],
    client_id: str,
    scope: str = "",
    session_id: str | None = None,
    lifetime: int | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> IssuedAccessToken:
    """Issue a signed access token (RFC 9068).

    `subject` is the user's public id (User.sub) or, for machine tokens, the client id.
    `lifetime` defaults to AUTHSERVER_ACCESS_TOKEN_TTL. Raises ValueError for bad arguments and
    KeyStoreUnavailable (503) when no key can sign.
    """
    config = get_config()
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError("subject must be a non-empty string")
    if not isinstance(client_id, str) or not client_id.strip():
        raise ValueError("client_id must be a non-empty string")
    if not isinstance(scope, str):
        raise ValueError("scope must be a space-separated string")
    lifetime = config.access_token_ttl if lifetime is None else lifetime
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1:
        raise ValueError("lifetime must be a positive number of seconds")
    if lifetime > config.signed_token_max_lifetime:
        raise ValueError("lifetime exceeds AUTHSERVER_SIGNED_TOKEN_MAX_LIFETIME")
    extra = dict(extra_claims or {})
    clash = RESERVED_CLAIMS.intersection(extra)
    if clash:
        raise ValueError(f"extra_claims may not set {', '.join(sorted(clash))}")

    now = now or timezone.now()
    issued_at = int(now.timestamp())
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "iss": config.issuer,
        "sub": subject,
        "aud": _audience(audience),
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "jti": jti,
        "client_id": client_id,
        "scope": " ".join(scope.split()),
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    claims.update(extra)

    key = active_signing_key(now)
    token = key.backend.encode(claims, typ=ACCESS_TOKEN_TYP)
    return IssuedAccessToken(
        token=token,
        jti=jti,
        expires_in=lifetime,
        expires_at=datetime.fromtimestamp(issued_at + lifetime, tz=UTC),
        kid=key.kid,
    )
