"""The session engine: one service, used by every grant, for sessions and refresh-token rotation.

- A sign-in starts a Session (a refresh-token family) and gets an access token plus, optionally,
  an opaque refresh token (256 random bits) of which only the SHA-256 digest is stored.
- `refresh_token_rotate` spends the presented token and issues its successor atomically. On
  PostgreSQL the common case is two statements: a read of the token, and one statement that
  spends it and writes the successor, the session and the audit event only if the token is still
  unspent at that moment. Everything else (a spent, revoked or expired token, a lost race,
  SQLite) is decided in one transaction under a row lock on the token and its session.
- Presenting a token that had already been spent when it was presented is reuse: the whole session
  is revoked (its newest token stops working too) and the event audited (node-oidc-provider and
  RFC 9700 §4.14.2 "refresh token rotation"). A request that presented the token while it was
  still unspent, and lost the race for the row lock to a concurrent request, is refused without
  revoking anything: it cannot be a replay of a value it saw before it was spent.
- Opt-in grace window (AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS): re-presenting the just-spent
  token while its successor is still unused revokes that successor and issues a fresh pair, so a
  lost response does not log the user out.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from audit.events import EventType as events
from audit.models import AuthEvent
from audit.services import (
    audit_event_insert_params,
    audit_event_insert_sql,
    audit_event_prepare,
    audit_event_record,
    audit_event_store,
    audit_event_stored,
)
from authserver import metrics
from authserver.conf import get_config
from sessions.models import BROWSER_CLIENT_ID, FIRST_PARTY_CLIENT_ID, RefreshToken, Session
from tokens.issuance import access_token_issue

logger = logging.getLogger(__name__)

# Our refresh tokens are secrets.token_urlsafe(32): 43 characters of the URL-safe alphabet.
_REFRESH_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
Reason = Session.RevokeReason


# Every refused refresh says this and nothing else (issue 13.10): whether the token was unknown,
# spent, revoked, expired, another client's or lost a race is for the audit trail, never for
# whoever presented it (a thief would learn which tokens are worth trying again).
REFRESH_REFUSED_DESCRIPTION = "The refresh token is invalid or expired."


class RefreshError(Exception):
    """The refresh token cannot be used. `reason` is for the audit trail, never the client;
    `description` is the same for every reason."""

    def __init__(self, reason: str):
        super().__init__(REFRESH_REFUSED_DESCRIPTION)
        self.reason = reason
        self.description = REFRESH_REFUSED_DESCRIPTION


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str | None
    expires_in: int
    scope: str
    session: Session
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type


def refresh_token_hash(value: str) -> bytes:
    """SHA-256 of the token: 256 random bits need no salt and no slow hash."""
    return hashlib.sha256(value.encode("ascii")).digest()


def _new_refresh_value() -> tuple[str, bytes]:
    value = secrets.token_urlsafe(32)
    return value, refresh_token_hash(value)


def _refresh_expiry(session: Session, now: datetime) -> datetime:
    return min(session.expires_at, now + timedelta(seconds=get_config().session_idle_timeout))


def _access_token(session: Session, *, now: datetime, lifetime: int | None) -> tuple[str, int]:
    issued = access_token_issue(
        subject=session.user.sub,
        audience=session.audience.split(),
        client_id=session.client_id,
        scope=session.scope,
        session_id=str(session.id),
        lifetime=lifetime,
        now=now,
    )
    return issued.token, issued.expires_in


def session_start(
    *,
    user,
    client_id: str,
    audience: Sequence[str],
    scope: str = "",
    issue_refresh_token: bool = True,
    access_token_lifetime: int | None = None,
    ip: str | None = None,
    user_agent: str = "",
    parent: Session | None = None,
    now: datetime | None = None,
) -> TokenPair:
    """Start a session for an authenticated user and issue its first tokens.

    `parent`: the browser sign-in that approved this grant. It is locked and must still be
    usable (SessionEnded otherwise), so a grant never hangs from a sign-in that has ended.
    """
    started = time.monotonic()
    now = now or timezone.now()
    config = get_config()
    with transaction.atomic():
        if parent is not None:
            parent = _parent_lock_live(parent, now)
        session = Session.objects.create(
            user=user,
            client_id=client_id,
            parent=parent,
            scope=scope,
            audience=" ".join(audience),
            user_agent=user_agent[:512],
            ip=ip,
            created_at=now,
            last_used_at=now,
            expires_at=now + timedelta(seconds=config.session_max_age),
            idle_expires_at=now + timedelta(seconds=config.session_idle_timeout),
        )
        refresh_value = None
        if issue_refresh_token:
            refresh_value, digest = _new_refresh_value()
            RefreshToken.objects.create(
                session=session,
                token_hash=digest,
                created_at=now,
                expires_at=_refresh_expiry(session, now),
            )
        access, expires_in = _access_token(session, now=now, lifetime=access_token_lifetime)
        _count_issued("session", started)
    return TokenPair(
        access_token=access,
        refresh_token=refresh_value,
        expires_in=expires_in,
        scope=scope,
        session=session,
    )


class SessionEnded(Exception):
    """The browser sign-in a grant would hang from has ended."""


def _parent_lock_live(parent: Session, now: datetime) -> Session:
    locked = Session.objects.select_for_update().select_related("user").filter(pk=parent.pk).first()
    if locked is None or not session_is_usable(session=locked, now=now):
        raise SessionEnded
    return locked


def browser_session_start(
    *, user, ip: str | None = None, user_agent: str = "", now: datetime | None = None
) -> Session:
    """Record a browser's sign-in at the hosted pages (no token: the browser holds a Django
    session cookie that names this row). It lasts AUTHSERVER_BROWSER_SESSION_SECONDS."""
    now = now or timezone.now()
    end = now + timedelta(seconds=get_config().browser_session_seconds)
    return Session.objects.create(
        user=user,
        client_id=BROWSER_CLIENT_ID,
        user_agent=user_agent[:512],
        ip=ip,
        created_at=now,
        last_used_at=now,
        expires_at=end,
        idle_expires_at=end,
    )


def browser_session_renew(
    *, session: Session, ip: str | None = None, user_agent: str = "", now: datetime | None = None
) -> bool:
    """The same user signed in again in the same browser: the sign-in goes on (its grants stay)
    for another full period. False if it had ended meanwhile (then start a new one)."""
    now = now or timezone.now()
    end = now + timedelta(seconds=get_config().browser_session_seconds)
    updated = Session.objects.filter(
        pk=session.pk, revoked_at__isnull=True, expires_at__gt=now
    ).update(
        last_used_at=now, expires_at=end, idle_expires_at=end, ip=ip, user_agent=user_agent[:512]
    )
    return bool(updated)


def browser_session_touch(*, session: Session, now: datetime | None = None) -> None:
    """Note that the sign-in was just used (an authorization code issued from it)."""
    now = now or timezone.now()
    Session.objects.filter(pk=session.pk).update(last_used_at=now)


def _count_issued(flow: str, started: float) -> None:
    """Count the issuance once its transaction commits (metrics; never fails the request)."""
    transaction.on_commit(
        lambda: metrics.token_issued(flow=flow, seconds=time.monotonic() - started)
    )


def _refused(reason: str) -> RefreshError:
    metrics.refresh_failed(reason=reason)
    return RefreshError(reason)


def _revoke_rows(session: Session, reason: str, now: datetime) -> None:
    """End `session`, its refresh tokens and, for a browser sign-in, the OAuth grants it
    approved (and theirs). The caller holds the session's row lock, which `session_start` takes
    too before it hangs a new grant under a browser sign-in: no grant can slip in after this."""
    ended = [session.pk]
    if session.client_id == BROWSER_CLIENT_ID:
        children = list(
            Session.objects.filter(parent_id=session.pk, revoked_at__isnull=True).values_list(
                "pk", flat=True
            )
        )
        if children:
            Session.objects.filter(pk__in=children).update(
                revoked_at=now, revoke_reason=Reason.SIGN_IN_ENDED
            )
            ended.extend(children)
    Session.objects.filter(pk=session.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoke_reason=reason
    )
    RefreshToken.objects.filter(session_id__in=ended, revoked_at__isnull=True).update(
        revoked_at=now
    )
    session.revoked_at = now
    session.revoke_reason = reason


def _user_may_continue(session: Session) -> str | None:
    """Why the session's user can no longer refresh, or None."""
    user = session.user
    if not user.is_active:
        return Reason.USER_INACTIVE
    changed = getattr(user, "password_changed_at", None)
    if changed is not None and changed > session.created_at:
        return Reason.PASSWORD_CHANGED
    return None


def refresh_token_rotate(
    *,
    value: str,
    client_id: str | None = None,
    presented_at: datetime | None = None,
    access_token_lifetime: int | None = None,
    ip: str | None = None,
    user_agent: str = "",
    now: datetime | None = None,
) -> TokenPair:
    """Spend `value` and return a new pair; raise RefreshError otherwise.

    `presented_at` is when the request carrying the token arrived (defaults to now); `client_id`,
    when given, must be the client the session belongs to.
    """
    started = time.monotonic()
    now = now or timezone.now()
    presented_at = presented_at or now
    if not isinstance(value, str) or not _REFRESH_TOKEN_RE.match(value):
        raise _refused("malformed")
    digest = refresh_token_hash(value)
    issue = _Issue(
        lifetime=access_token_lifetime, ip=ip, user_agent=user_agent, now=now, started=started
    )
    pair = _rotate_unlocked(digest, client_id=client_id, issue=issue)
    if pair is not None:
        return pair
    config = get_config()
    failure: RefreshError | None = None
    audit: tuple[str, dict] | None = None
    with transaction.atomic():
        token = _token_load(digest, lock=True)
        if token is None:
            raise _refused("unknown")
        session = token.session
        if client_id is not None and session.client_id != client_id:
            # RFC 6749 §6: the token must have been issued to the authenticated client.
            raise _refused("client_mismatch")
        if session.revoked_at is not None:
            raise _refused("session_revoked")
        parent = token
        if token.consumed_at is not None or token.revoked_at is not None:
            parent, failure, audit = _spent_token_presented(
                token, presented_at=presented_at, grace=config.refresh_reuse_grace_seconds, now=now
            )
        if failure is None:
            failure, audit = _check_live(token, session, now)
        if failure is None:
            pair = _successor_issue(parent, session, grace=parent is not token, issue=issue)
            assert pair is not None  # noqa: S101 - unconditional under the row lock
            return pair
    # Revocations made above are committed; now report the failure (and audit it).
    if audit is not None:
        event, details = audit
        audit_event_record(
            event=event,
            user=session.user,
            client_id=session.client_id,
            session_id=session.id,
            ip=ip,
            user_agent=user_agent,
            details=details,
        )
    metrics.refresh_failed(reason=failure.reason)
    raise failure


@dataclass(frozen=True)
class _Issue:
    """What a rotation's new pair and audit event need from the request."""

    lifetime: int | None
    ip: str | None
    user_agent: str
    now: datetime
    started: float  # time.monotonic() when the request reached refresh_token_rotate


def _rotate_unlocked(digest: bytes, *, client_id: str | None, issue: _Issue) -> TokenPair | None:
    """The common case on PostgreSQL, in two statements and no explicit transaction.

    The token, its session and user are read without a lock; if all is well the new pair is
    made and one statement spends the token and writes the successor, the session and the audit
    event, all only if the token is at that moment still unspent and unrevoked in an unrevoked
    session (`_rotation_sql(alias, conditional=True)`). One statement is atomic by itself: BEGIN,
    the row lock and COMMIT are round trips saved. None means "decide under the row lock": the
    token is not in the common case (unknown, spent, revoked, expired, another client's, its user
    ended), another database is in use, or a concurrent request changed the token between the
    read and the write, in which case what this request made is dropped unseen.
    """
    alias = router.db_for_write(RefreshToken)
    if connections[alias].vendor != "postgresql":
        return None
    token = _token_load(digest, lock=False)
    if token is None:
        return None
    session = token.session
    now = issue.now
    if (
        (client_id is not None and session.client_id != client_id)
        or session.revoked_at is not None
        or token.consumed_at is not None
        or token.revoked_at is not None
        or _expired(token, session, now)
        or _user_may_continue(session) is not None
    ):
        return None
    return _successor_issue(token, session, grace=False, issue=issue, conditional=True)


def _successor_issue(
    parent: RefreshToken,
    session: Session,
    *,
    grace: bool,
    issue: _Issue,
    conditional: bool = False,
) -> TokenPair | None:
    """Make the new pair under `parent` and store it (see `_rotation_write`); None if
    `conditional` and the parent was no longer unspent when the write ran."""
    now = issue.now
    value, digest = _new_refresh_value()
    session.last_used_at = now
    session.idle_expires_at = _refresh_expiry(session, now)
    session.rotations += 1
    access, expires_in = _access_token(session, now=now, lifetime=issue.lifetime)
    event = audit_event_prepare(
        event=events.TOKEN_REFRESHED,
        user=session.user,
        client_id=session.client_id,
        session_id=session.id,
        ip=issue.ip,
        user_agent=issue.user_agent,
        details={"rotation": session.rotations, "grace": grace},
    )
    spent_at = None
    if parent.consumed_at is None and parent.revoked_at is None:
        # Marked spent by the last statement, stamped with the time it becomes spent: a request
        # that arrived before this instant saw an unspent token.
        spent_at = now + timedelta(seconds=time.monotonic() - issue.started)
    written = _rotation_write(
        parent,
        session,
        digest=digest,
        now=now,
        spent_at=spent_at,
        event=event,
        conditional=conditional,
    )
    if not written:
        return None
    if spent_at is not None:
        parent.consumed_at = spent_at
    _count_issued("refresh", issue.started)
    return TokenPair(
        access_token=access,
        refresh_token=value,
        expires_in=expires_in,
        scope=session.scope,
        session=session,
    )


def _spent_token_presented(
    token: RefreshToken, *, presented_at: datetime, grace: int, now: datetime
) -> tuple[RefreshToken, RefreshError | None, tuple[str, dict] | None]:
    """Decide what presenting an already consumed or revoked token means.

    Returns (token to hang the new pair under, failure, audit event).
    """
    session = token.session
    if token.consumed_at is not None and presented_at < token.consumed_at:
        # Presented while still unspent; a concurrent request spent it first. Not a replay.
        return token, RefreshError("concurrent_use"), None
    if (
        token.consumed_at is not None
        and grace > 0
        and now - token.consumed_at <= timedelta(seconds=grace)
    ):
        successor = RefreshToken.objects.select_for_update().filter(parent=token).first()
        if successor is not None and successor.consumed_at is None and successor.revoked_at is None:
            successor.revoked_at = now
            successor.save(update_fields=["revoked_at"])
            return successor, None, None
    _revoke_rows(session, Reason.REUSE_DETECTED, now)
    logger.warning("refresh token reuse detected; session %s revoked", session.id)
    return (
        token,
        RefreshError("reuse_detected"),
        (events.REFRESH_REUSE_DETECTED, {"token_id": token.pk, "rotations": session.rotations}),
    )


def _expired(token: RefreshToken, session: Session, now: datetime) -> bool:
    """The token or its session has run out (both rotation paths ask this one question)."""
    return token.expires_at <= now or not session.is_live(now)


def _check_live(
    token: RefreshToken, session: Session, now: datetime
) -> tuple[RefreshError | None, tuple[str, dict] | None]:
    if _expired(token, session, now):
        return RefreshError("expired"), None
    reason = _user_may_continue(session)
    if reason is not None:
        _revoke_rows(session, reason, now)
        return RefreshError(reason), (events.SESSION_REVOKED, {"reason": reason})
    return None, None


# --- The rotation's statements ------------------------------------------------------------
# On PostgreSQL a rotation is a read and one conditional write statement (the common case), or
# BEGIN, one locking SELECT, one write statement and COMMIT, with SQL written here once: the ORM
# compiled the same queries afresh on every refresh, which cost more CPU than everything else in
# the request (bench/README.md). Other databases (SQLite, for `make run`) take the equivalent ORM
# path under the lock.


def _columns(model) -> tuple:
    return tuple(model._meta.concrete_fields)


def _user_model():
    return Session._meta.get_field("user").related_model


def _select_list(alias: str, *tables) -> str:
    quote = connections[alias].ops.quote_name
    return ", ".join(
        f"{name}.{quote(field.column)}" for name, model in tables for field in _columns(model)
    )


@functools.cache
def _token_sql(alias: str, lock: bool) -> str:
    """The presented token, its session and user in one row; with `lock`, token and session
    locked."""
    quote = connections[alias].ops.quote_name
    user = _user_model()
    columns = _select_list(alias, ("t", RefreshToken), ("s", Session), ("u", user))
    return (
        f"SELECT {columns} FROM {quote(RefreshToken._meta.db_table)} t "  # noqa: S608 - names only
        f"JOIN {quote(Session._meta.db_table)} s ON s.id = t.session_id "
        f"JOIN {quote(user._meta.db_table)} u ON u.{quote(user._meta.pk.column)} = s.user_id "
        "WHERE t.token_hash = %s" + (" FOR UPDATE OF t, s" if lock else "")
    )


@functools.cache
def _session_sql(alias: str) -> str:
    """A session and its user by session id (session_get, on every bearer-authenticated call)."""
    quote = connections[alias].ops.quote_name
    user = _user_model()
    columns = _select_list(alias, ("s", Session), ("u", user))
    return (
        f"SELECT {columns} FROM {quote(Session._meta.db_table)} s "  # noqa: S608 - names only
        f"JOIN {quote(user._meta.db_table)} u ON u.{quote(user._meta.pk.column)} = s.user_id "
        "WHERE s.id = %s"
    )


@functools.cache
def _loading(model) -> tuple[list[str], tuple]:
    """Attribute names of `model`'s columns, and (index, field) of those that convert values."""
    fields = _columns(model)
    return [f.attname for f in fields], tuple(
        (i, f) for i, f in enumerate(fields) if hasattr(f, "from_db_value")
    )


def _instance(model, alias: str, values: Sequence):
    """A model instance from its columns' values, as the ORM would load it."""
    names, converting = _loading(model)
    if converting:
        values = list(values)
        for index, field in converting:
            values[index] = field.from_db_value(values[index], None, connections[alias])
    return model.from_db(alias, names, values)


def _token_load(digest: bytes, *, lock: bool) -> RefreshToken | None:
    """The token with its session and user loaded; with `lock`, SELECT ... FOR UPDATE OF the
    token and its session."""
    alias = router.db_for_write(RefreshToken)
    if connections[alias].vendor != "postgresql":
        tokens = RefreshToken.objects.select_related("session", "session__user")
        if lock:
            tokens = tokens.select_for_update(of=("self", "session"))
        return tokens.filter(token_hash=digest).first()
    with connections[alias].cursor() as cursor:
        cursor.execute(_token_sql(alias, lock), [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token_end = len(_columns(RefreshToken))
    session_end = token_end + len(_columns(Session))
    token = _instance(RefreshToken, alias, row[:token_end])
    session = _instance(Session, alias, row[token_end:session_end])
    session.user = _instance(
        Session._meta.get_field("user").related_model, alias, row[session_end:]
    )
    token.session = session
    return token


_SUCCESSOR_INSERT = (
    "INSERT INTO tokens_refreshtoken (session_id, parent_id, token_hash, created_at, expires_at) "
    "VALUES (%s, %s, %s, %s, %s)"
)
_SESSION_TOUCH = (
    "UPDATE tokens_session SET last_used_at = %s, idle_expires_at = %s, rotations = %s "
    "WHERE id = %s"
)
_PARENT_SPEND = "UPDATE tokens_refreshtoken SET consumed_at = %s WHERE id = %s"
# The conditional rotation (`_rotate_unlocked`): the spend decides, every other write follows it.
# Under READ COMMITTED an UPDATE that finds its row locked waits and re-checks its WHERE on the
# committed row, so of two requests spending one token only the first matches. Token and session
# are each found by primary key, and the NULL tests are written so that they do not match the
# predicates of the partial "live" indexes (tokens_refresh_live, tokens_session_user_live): with
# `consumed_at IS NULL AND revoked_at IS NULL` the planner chose those indexes on tables without
# statistics and scanned every live token and session, plus the entries of every token spent
# since the last vacuum, on each refresh (tests/sessions/test_session_sql.py checks the plan).
_PARENT_SPEND_IF_UNSPENT = (
    "UPDATE tokens_refreshtoken SET consumed_at = %s "
    "WHERE id = %s AND COALESCE(consumed_at, revoked_at) IS NULL "
    "AND (SELECT revoked_at FROM tokens_session WHERE id = %s) IS NULL RETURNING id"
)
_SUCCESSOR_INSERT_IF_SPENT = (
    "INSERT INTO tokens_refreshtoken (session_id, parent_id, token_hash, created_at, expires_at) "
    "SELECT %s, spent.id, %s, %s, %s FROM spent"
)
_SESSION_TOUCH_IF_SPENT = _SESSION_TOUCH + " AND EXISTS (SELECT FROM spent)"


@functools.cache
def _rotation_sql(alias: str, conditional: bool = False) -> str:
    """Successor, session, spend and audit event in one statement (data-modifying CTEs): one
    round trip instead of four, all written at the same instant, after the token was signed.
    `conditional`: only if the spend matched (the token still unspent, its session unrevoked);
    the statement then returns no row."""
    # Constant statements only; every value is a parameter.
    if conditional:
        return (
            f"WITH spent AS ({_PARENT_SPEND_IF_UNSPENT}), "  # noqa: S608
            f"successor AS ({_SUCCESSOR_INSERT_IF_SPENT}), touched AS ({_SESSION_TOUCH_IF_SPENT}), "
            f"event AS ({audit_event_insert_sql(alias, only_if_rows_in='spent')}) "
            "SELECT * FROM event"
        )
    return (
        f"WITH successor AS ({_SUCCESSOR_INSERT}), touched AS ({_SESSION_TOUCH}), "  # noqa: S608
        f"spent AS ({_PARENT_SPEND}), event AS ({audit_event_insert_sql(alias)}) "
        "SELECT * FROM event"
    )


def _rotation_write(
    parent: RefreshToken,
    session: Session,
    *,
    digest: bytes,
    now: datetime,
    spent_at: datetime | None,
    event: AuthEvent,
    conditional: bool = False,
) -> bool:
    """Store the successor of `parent`, the session's new deadlines and rotation count, the
    audit `event` and, when `spent_at` is given, mark `parent` spent: the spend is written last
    (or, on PostgreSQL, in the same statement as everything else). `conditional` (PostgreSQL,
    `spent_at` given): write nothing unless `parent` is still unspent; False if so."""
    alias = router.db_for_write(RefreshToken)
    if connections[alias].vendor != "postgresql" or spent_at is None:
        # Other databases, and the grace-window reissue (its parent was revoked, not spent).
        audit_event_store(event)
        RefreshToken.objects.create(
            session=session,
            parent=parent,
            token_hash=digest,
            created_at=now,
            expires_at=session.idle_expires_at,
        )
        Session.objects.filter(pk=session.pk).update(
            last_used_at=now, idle_expires_at=session.idle_expires_at, rotations=session.rotations
        )
        if spent_at is not None:
            RefreshToken.objects.filter(pk=parent.pk).update(consumed_at=spent_at)
        return True
    touch = (now, session.idle_expires_at, session.rotations, session.pk)
    if conditional:
        params = [
            *(spent_at, parent.pk, session.pk),
            *(session.pk, digest, now, session.idle_expires_at),
            *touch,
            *audit_event_insert_params(event, alias),
        ]
    else:
        params = [
            *(session.pk, parent.pk, digest, now, session.idle_expires_at),
            *touch,
            *(spent_at, parent.pk),
            *audit_event_insert_params(event, alias),
        ]
    with connections[alias].cursor() as cursor:
        cursor.execute(_rotation_sql(alias, conditional), params)
        row = cursor.fetchone()
    if row is None:
        return False
    audit_event_stored(event, row[0], alias)
    return True


def session_revoke(*, session: Session, reason: str, now: datetime | None = None) -> bool:
    """End one session and every refresh token in it. False if it had already ended."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.pk).first()
        if locked is None or locked.revoked_at is not None:
            return False
        _revoke_rows(locked, reason, now)
    session.revoked_at, session.revoke_reason = now, reason
    return True


def session_find_by_refresh_token(*, value: str) -> Session | None:
    """The session a refresh token (spent or not) belongs to, or None."""
    if not isinstance(value, str) or not _REFRESH_TOKEN_RE.match(value):
        return None
    token = (
        RefreshToken.objects.select_related("session", "session__user")
        .filter(token_hash=refresh_token_hash(value))
        .first()
    )
    return token.session if token else None


def user_sessions_revoke(*, user, reason: str, now: datetime | None = None) -> int:
    """End every live session of `user` (logout-all, password change, deactivation)."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Session.objects.select_for_update()
            .filter(user=user, revoked_at__isnull=True)
            .values_list("pk", flat=True)
        )
        if ids:
            Session.objects.filter(pk__in=ids).update(revoked_at=now, revoke_reason=reason)
            RefreshToken.objects.filter(session_id__in=ids, revoked_at__isnull=True).update(
                revoked_at=now
            )
    return len(ids)


def session_get(*, sid) -> Session | None:
    """The session with this id (its user loaded), whatever its state; None for a bad id."""
    try:
        pk = sid if isinstance(sid, uuid.UUID) else uuid.UUID(str(sid))
    except (ValueError, TypeError, AttributeError):
        return None
    alias = router.db_for_read(Session)
    if connections[alias].vendor != "postgresql":
        return Session.objects.select_related("user").filter(pk=pk).first()
    with connections[alias].cursor() as cursor:
        cursor.execute(_session_sql(alias), [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(_columns(Session))
    session = _instance(Session, alias, row[:split])
    session.user = _instance(_user_model(), alias, row[split:])
    return session


def session_is_usable(*, session: Session, now: datetime | None = None) -> bool:
    """Whether tokens of `session` may still be used: not revoked or expired, its user active,
    and no password change since it began."""
    return session.is_live(now or timezone.now()) and _user_may_continue(session) is None


def session_get_live(*, sid: str, user=None, now: datetime | None = None) -> Session | None:
    """The session named by an access token's `sid`, if it may still be used.

    Dead when revoked, expired, its user is inactive, or the password changed after it began.
    """
    session = session_get(sid=sid)
    if session is None or (user is not None and session.user_id != user.pk):
        return None
    return session if session_is_usable(session=session, now=now) else None


def session_list_live(*, user, now: datetime | None = None) -> list[Session]:
    now = now or timezone.now()
    return list(Session.objects.live(now=now).filter(user=user).order_by("-last_used_at"))


def session_app_names(sessions: Sequence[Session]) -> dict[str, str]:
    """What to call the app of each session, by client id: the OAuth client's name, "Browser
    sign-in" or "First-party app". One query for all of them. The OAuth layer sits above this
    one, so its model is looked up by name rather than imported."""
    names = {BROWSER_CLIENT_ID: "Browser sign-in", FIRST_PARTY_CLIENT_ID: "First-party app"}
    wanted = {s.client_id for s in sessions} - set(names)
    if wanted:
        client_model = apps.get_model("oauth", "Client")
        names.update(
            client_model.objects.filter(client_id__in=wanted).values_list("client_id", "name")
        )
    return names


def _ended_before(cutoff: datetime) -> Q:
    # idle_expires_at is kept <= expires_at, so it alone tells when a session ended by time.
    return Q(revoked_at__lt=cutoff) | Q(idle_expires_at__lt=cutoff)


def sessions_purge(
    *, ended_before: datetime, batch_size: int = 5000, dry_run: bool = False
) -> tuple[int, int]:
    """Delete sessions that ended before `ended_before`, in batches; (sessions, tokens) counted."""
    ended = Session.objects.filter(_ended_before(ended_before))
    if dry_run:
        return ended.count(), RefreshToken.objects.filter(session__in=ended).count()
    sessions = tokens = 0
    while True:
        with transaction.atomic():
            ids = list(ended.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            tokens += RefreshToken.objects.filter(session_id__in=ids).delete()[0]
            sessions += Session.objects.filter(pk__in=ids).delete()[0]
    return sessions, tokens


def client_sessions_revoke(
    *, client_id: str, reason: str, user=None, now: datetime | None = None
) -> list[Session]:
    """End every live session (grant) of the client `client_id`, or only `user`'s with it: the
    client was deactivated or deleted, or the user withdrew consent (issue 13.4, 13.7). Their
    refresh tokens stop working, and their access tokens are refused wherever the session is
    checked. Returns the sessions ended (their users loaded), for the caller to audit."""
    now = now or timezone.now()
    with transaction.atomic():
        sessions = Session.objects.select_for_update(of=("self",)).filter(
            client_id=client_id, revoked_at__isnull=True
        )
        if user is not None:
            sessions = sessions.filter(user=user)
        ended = list(sessions.select_related("user"))
        if ended:
            ids = [s.pk for s in ended]
            Session.objects.filter(pk__in=ids).update(revoked_at=now, revoke_reason=reason)
            RefreshToken.objects.filter(session_id__in=ids, revoked_at__isnull=True).update(
                revoked_at=now
            )
            for session in ended:
                session.revoked_at, session.revoke_reason = now, reason
    return ended
