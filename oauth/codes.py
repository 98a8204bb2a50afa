"""Authorization codes (RFC 6749 §4.1.2): issued after consent, redeemed once at the token
endpoint, replay punished.

The code is 256 random bits; only its SHA-256 digest is stored. Redemption locks the row
(SELECT ... FOR UPDATE) and marks it consumed in the caller's transaction, which also starts the
session; so of two concurrent exchanges exactly one wins, and the loser sees the winner's session
and revokes it (RFC 6749 §4.1.2: "SHOULD revoke all tokens previously issued based on that
authorization code"; RFC 9700 §4.2.4).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.events import EventType
from audit.services import audit_event_record
from oauth.models import AuthorizationCode, Client
from sessions.models import Session
from sessions.services import browser_session_touch, session_revoke

logger = logging.getLogger(__name__)

AUTHORIZATION_CODE_LIFETIME = 60  # seconds (RFC 6749 §4.1.2 recommends at most 10 minutes)
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def code_digest(value: str) -> str:
    return hashlib.sha256(value.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class CodeRequest:
    """What the authorization request established, to be bound to the code."""

    client: Client
    user: object
    redirect_uri: str
    scope: str
    nonce: str
    code_challenge: str
    code_challenge_method: str
    auth_time: int
    amr: str = ""
    # The browser sign-in that approved the request (None: no row, e.g. a service test).
    browser_session: Session | None = None


def authorization_code_issue(*, request: CodeRequest, now: datetime | None = None) -> str:
    """Store a new code for `request` and return its value (only the caller ever sees it)."""
    now = now or timezone.now()
    value = secrets.token_urlsafe(32)
    AuthorizationCode.objects.create(
        code_hash=code_digest(value),
        client=request.client,
        user=request.user,
        redirect_uri=request.redirect_uri,
        scope=request.scope,
        nonce=request.nonce,
        code_challenge=request.code_challenge,
        code_challenge_method=request.code_challenge_method,
        auth_time=datetime.fromtimestamp(request.auth_time, tz=UTC),
        amr=request.amr,
        browser_session=request.browser_session,
        created_at=now,
        expires_at=now + timedelta(seconds=AUTHORIZATION_CODE_LIFETIME),
    )
    if request.browser_session is not None:
        browser_session_touch(session=request.browser_session, now=now)
    return value


def authorization_code_redeem(
    *, value: str, client: Client, ip: str | None = None, user_agent: str = "", now=None
) -> AuthorizationCode | None:
    """Consume the code issued to `client`, or return None (invalid_grant).

    Must run inside the transaction that then starts the session and links it with
    `authorization_code_link_session`. A code presented again after it was consumed revokes the
    session its first exchange started, and is audited.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("authorization_code_redeem must run inside transaction.atomic()")
    now = now or timezone.now()
    if not isinstance(value, str) or not _CODE_RE.match(value):
        return None
    code = (
        AuthorizationCode.objects.select_for_update(of=("self",))
        .select_related("user", "browser_session")
        .filter(code_hash=code_digest(value), client=client)
        .first()
    )
    if code is None:
        return None
    if code.consumed_at is not None:
        _replayed(code, ip=ip, user_agent=user_agent, now=now)
        return None
    if code.expires_at <= now:
        return None
    code.consumed_at = now
    code.save(update_fields=["consumed_at"])
    return code


def authorization_code_link_session(*, code: AuthorizationCode, session: Session) -> None:
    code.session = session
    code.save(update_fields=["session"])


def _replayed(code: AuthorizationCode, *, ip: str | None, user_agent: str, now) -> None:
    revoked = False
    if code.session_id is not None:
        session = Session.objects.filter(pk=code.session_id).first()
        if session is not None:
            revoked = session_revoke(
                session=session, reason=Session.RevokeReason.CODE_REPLAYED, now=now
            )
    logger.warning("authorization code replayed; session %s revoked", code.session_id)
    audit_event_record(
        event=EventType.OAUTH_CODE_REPLAYED,
        user=code.user,
        client_id=code.client.client_id,
        session_id=code.session_id,
        ip=ip,
        user_agent=user_agent,
        details={"code_id": code.pk, "session_revoked": revoked},
    )


def authorization_codes_purge(*, older_than: datetime) -> int:
    """Delete codes that expired before `older_than` (kept a while to recognise replays)."""
    return AuthorizationCode.objects.filter(expires_at__lt=older_than).delete()[0]
