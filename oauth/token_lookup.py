"""Finding what a presented token is, for revocation (RFC 7009) and introspection (RFC 7662).

Access tokens are verified as any API would (signature by a published key, issuer, expiry) and
then tied to their session by `sid`; refresh tokens name their session, whose row says whether
the token is its current one (sessions.services.refresh_token_inspect).
Either way the answer is "this token, of this client, in this session" or nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.selectors import user_get_by_sub
from authserver.conf import get_config
from oauth.clients import client_token_is_current
from sessions.apis import FIRST_PARTY_CLIENT_ID
from sessions.models import Session
from sessions.services import (
    refresh_token_inspect,
    session_get,
    session_is_usable,
    session_usable_get,
)
from tokens.issuance import OPERATOR_CLIENT_ID
from tokens.revocation import access_token_is_denied
from tokens.verification import (
    ANY_AUDIENCE,
    MAX_TOKEN_LENGTH,
    TokenInvalid,
    access_token_verify,
)

ACCESS_TOKEN = "access_token"  # noqa: S105 - token type names (RFC 7009 §2.1)
REFRESH_TOKEN = "refresh_token"  # noqa: S105


@dataclass
class FoundToken:
    kind: str
    client_id: str
    session: Session | None
    claims: dict[str, Any]
    # A refresh token: whether it is its session's current one (the others are spent).
    refresh_current: bool | None = None
    # An access token found with `liveness_only`: whether its session is usable (`session` is
    # then not loaded).
    session_usable: bool | None = None

    def __repr__(self) -> str:  # never the token
        return f"FoundToken(kind={self.kind!r}, client_id={self.client_id!r})"

    def check_client(self, client) -> bool:
        return self.client_id == client.client_id


def _access_token(value: str, now: datetime, liveness_only: bool = False) -> FoundToken | None:
    if value.count(".") != 2 or len(value) > MAX_TOKEN_LENGTH:
        return None
    try:
        # The token names its own audience: the authorization server accepts any audience of
        # its own tokens; signature, issuer, expiry and type are still checked.
        claims = access_token_verify(value, audience=ANY_AUDIENCE, now=now)
    except (TokenInvalid, TypeError, ValueError):
        return None
    client_id = claims.get("client_id")
    if not isinstance(client_id, str):
        return None
    session = None
    sid = claims.get("sid")
    if sid is not None and liveness_only:
        usable = session_usable_get(sid=_uuid_value(sid), now=now)
        if usable is None:
            return None
        return FoundToken(
            kind=ACCESS_TOKEN, client_id=client_id, session=None, claims=claims,
            session_usable=usable,
        )  # fmt: skip
    if sid is not None:
        session = session_get(sid=_uuid(sid))
        if session is None:
            return None
    return FoundToken(kind=ACCESS_TOKEN, client_id=client_id, session=session, claims=claims)


def _uuid(value: Any) -> str | None:
    parsed = _uuid_value(value)
    return None if parsed is None else str(parsed)


def _uuid_value(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value if isinstance(value, str) else str(value))
    except (TypeError, ValueError):
        return None


def _refresh_token(value: str) -> FoundToken | None:
    if not value.isascii() or not 20 <= len(value) <= 100 or "." in value:
        return None
    state = refresh_token_inspect(value=value)
    if state is None:
        return None
    session = state.session
    claims = {
        "sub": session.user.sub,
        "client_id": session.client_id,
        "scope": session.scope,
        "iat": int(state.issued_at.timestamp()),
        "exp": int(state.expires_at.timestamp()),
        "iss": get_config().issuer,
        "sid": str(session.id),
    }
    return FoundToken(
        kind=REFRESH_TOKEN,
        client_id=session.client_id,
        session=session,
        claims=claims,
        refresh_current=state.current,
    )


def token_find(
    value: str, *, now: datetime | None = None, liveness_only: bool = False
) -> FoundToken | None:
    """The token `value` is, if this server issued it and its signature or digest checks out.
    Expired, spent or revoked tokens are found too; `token_is_active` tells. `liveness_only`:
    an access token's session is not loaded, only whether it is usable (introspection)."""
    if not isinstance(value, str) or not value:
        return None
    now = now or timezone.now()
    return _access_token(value, now, liveness_only) or _refresh_token(value)


def token_is_active(found: FoundToken, *, now: datetime | None = None) -> bool:
    """Whether the token may still be used: its client exists, is active and has not been
    deactivated since the token was issued (issue 13.4), its session (if any) is usable, a
    refresh token is unspent and unrevoked, and an access token without a session has not been
    revoked (issue 13.12)."""
    now = now or timezone.now()
    if not token_client_accepts(found.client_id, found.claims.get("iat")):
        return False
    if found.session_usable is not None:
        return found.session_usable  # a verified access token (not expired) of a session
    if found.session is not None and not session_is_usable(session=found.session, now=now):
        return False
    if found.refresh_current is not None:
        return found.refresh_current and found.claims["exp"] > now.timestamp()
    if found.session is None:
        # A user's token without a session (issue_access_token --sub): its user must still be
        # active (CVE-2024-22513 class). A client's own token names the client, not a UUID.
        sub = found.claims.get("sub")
        if _uuid(sub) is not None and user_get_by_sub(sub=sub) is None:
            return False
        # No session to end when it was revoked: the deny-list by jti (one primary-key lookup).
        return not access_token_is_denied(jti=found.claims["jti"])
    return True  # a verified access token: not expired (checked), session live (above)


def token_client_accepts(client_id: str, issued_at: Any) -> bool:
    """Whether the client a token was issued to still stands behind it (cached lookup). The
    first-party client is not an OAuth client: its tokens depend on their session alone."""
    if client_id in (FIRST_PARTY_CLIENT_ID, OPERATOR_CLIENT_ID):
        return True
    if isinstance(issued_at, bool) or not isinstance(issued_at, int | float):
        return False
    return client_token_is_current(client_id=client_id, issued_at=issued_at)
