"""The session engine: one service, used by every grant, for sessions and refresh-token rotation.

- A sign-in starts a Session and gets an access token plus, optionally, a refresh token. The
  session row holds the SHA-256 digest of its current refresh token and its generation; the token
  names its session and generation and carries a MAC (sessions/refresh_tokens.py). A session is
  therefore one row however often it refreshes (issue 15.1).
- `refresh_token_rotate` spends the presented token and issues its successor. On PostgreSQL the
  common case is one statement by primary key: an UPDATE that replaces the digest only if it is
  still the presented token's and the session and its user may go on (so of concurrent requests
  with one token exactly one wins), and reads back what the access token needs; with client
  claims to map (an OAuth client), a read of the session first, then that UPDATE without the
  rules. The UPDATE changes no indexed column, so PostgreSQL writes it as a
  HOT update: no index entry, and the old row version is pruned on its page. Everything else
  (an earlier token, a lost race, an ended session, SQLite) is decided in one transaction under
  the session's row lock.
- Presenting a token of the session's family after it was spent is reuse: the whole session is
  revoked and the event audited (RFC 9700 §4.14.2 "refresh token rotation"). Only a token whose
  MAC verifies can be recognised as an earlier one, so a forged or guessed value revokes nothing.
  A request that presented the token while it was still unspent, and lost the race to a
  concurrent request, is refused without revoking anything: it is no replay of a value it saw
  after it was spent.
- Opt-in grace window (AUTHSERVER_REFRESH_REUSE_GRACE_SECONDS): re-presenting the just-spent
  token while its successor is still unused revokes that successor and issues a fresh pair, so a
  lost response does not log the user out.
- Routine rotations write no audit row (issue 15.2): they are counted in the metrics and in
  `Session.rotations`. Reuse, revocation and the grace-window reissue are audited.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.apps import apps
from django.db import connections, models, router, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from audit.events import EventType as events
from audit.services import audit_event_record
from authserver import metrics
from authserver.conf import get_config
from authserver.db.base import fetchone
from mfa.policy import acr_for
from sessions.models import BROWSER_CLIENT_ID, FIRST_PARTY_CLIENT_ID, RefreshToken, Session
from sessions.refresh_tokens import (
    ParsedRefreshToken,
    refresh_token_digest,
    refresh_token_new,
    refresh_token_parse,
)
from tokens.issuance import access_token_issue

logger = logging.getLogger(__name__)

# Refresh tokens of the format before issue 15.1 were secrets.token_urlsafe(32): 43 characters
# of the URL-safe alphabet, found by digest in the RefreshToken table.
_LEGACY_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
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


def _legacy_digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("ascii")).digest()


def _refresh_expiry(session: Session, now: datetime) -> datetime:
    return min(session.expires_at, now + timedelta(seconds=get_config().session_idle_timeout))


def _access_token(
    session: Session,
    *,
    now: datetime,
    lifetime: int | None,
    extra_claims: Mapping[str, Any] | None = None,
) -> tuple[str, int]:
    if session.amr:
        # RFC 9068 §2.2.1: acr and amr of the sign-in, so an API can demand a second factor.
        amr = session.amr.split()
        extra_claims = {**(extra_claims or {}), "acr": acr_for(amr), "amr": amr}
    issued = access_token_issue(
        subject=session.user.sub,
        audience=session.audience.split(),
        client_id=session.client_id,
        scope=session.scope,
        session_id=str(session.id),
        lifetime=lifetime,
        extra_claims=extra_claims,
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
    extra_claims: Mapping[str, Any] | None = None,
    amr: Sequence[str] | None = None,
    ip: str | None = None,
    user_agent: str = "",
    parent: Session | None = None,
    now: datetime | None = None,
) -> TokenPair:
    """Start a session for an authenticated user and issue its first tokens.

    `extra_claims`: more claims for the access token (an OAuth client's mapped claims).

    `parent`: the browser sign-in that approved this grant. It is locked and must still be
    usable (SessionEnded otherwise), so a grant never hangs from a sign-in that has ended.
    """
    started = time.monotonic()
    now = now or timezone.now()
    config = get_config()
    session = Session(
        id=uuid.uuid4(),
        user=user,
        client_id=client_id,
        scope=scope,
        audience=" ".join(audience),
        user_agent=user_agent[:512],
        ip=ip,
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(seconds=config.session_max_age),
        idle_expires_at=now + timedelta(seconds=config.session_idle_timeout),
        amr=" ".join(amr or ()),
    )
    session.ends_not_before = session.idle_expires_at
    refresh_value = None
    if issue_refresh_token:
        refresh_value, session.refresh_digest = refresh_token_new(
            session_id=session.id, generation=0
        )
    with transaction.atomic():
        if parent is not None:
            session.parent = _parent_lock_live(parent, now)
        session.save(force_insert=True)
        access, expires_in = _access_token(
            session, now=now, lifetime=access_token_lifetime, extra_claims=extra_claims
        )
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
        ends_not_before=end,
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
    if session.client_id == BROWSER_CLIENT_ID:
        children = list(
            Session.objects.filter(parent_id=session.pk, revoked_at__isnull=True).values_list(
                "pk", flat=True
            )
        )
        if children:
            _sessions_end(children, Reason.SIGN_IN_ENDED, now)
    _sessions_end([session.pk], reason, now)
    session.revoked_at = now
    session.revoke_reason = reason
    session.refresh_digest = None


def _sessions_end(ids: Sequence, reason: str, now: datetime) -> None:
    """Mark the sessions `ids` revoked, and forget their current refresh token's digest, so the
    rotation's conditional write (which matches on the digest) can never succeed on them."""
    Session.objects.filter(pk__in=ids, revoked_at__isnull=True).update(
        revoked_at=now, revoke_reason=reason, refresh_digest=None
    )
    RefreshToken.objects.filter(session_id__in=ids, revoked_at__isnull=True).update(revoked_at=now)


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
    access_claims: Callable[[Session], Mapping[str, Any]] | None = None,
    ip: str | None = None,
    user_agent: str = "",
    now: datetime | None = None,
) -> TokenPair:
    """Spend `value` and return a new pair; raise RefreshError otherwise.

    `access_claims(session)`: more claims for the new access token (an OAuth client's mapped
    claims), computed for the session being rotated.

    `presented_at` is when the request carrying the token arrived (defaults to now); `client_id`,
    when given, must be the client the session belongs to.
    """
    started = time.monotonic()
    now = now or timezone.now()
    issue = _Issue(
        presented_at=presented_at or now,
        client_id=client_id,
        lifetime=access_token_lifetime,
        ip=ip,
        user_agent=user_agent,
        now=now,
        started=started,
        claims=access_claims,
    )
    parsed = refresh_token_parse(value)
    if parsed is not None:
        digest = refresh_token_digest(value)
        pair = _rotate_unlocked(parsed, digest, issue)
        if pair is not None:
            return pair
        return _rotate_locked(parsed, digest, issue)
    if isinstance(value, str) and _LEGACY_TOKEN_RE.match(value):
        return _rotate_legacy(_legacy_digest(value), issue)
    raise _refused("malformed")


@dataclass(frozen=True)
class _Issue:
    """What a rotation needs from the request."""

    presented_at: datetime
    client_id: str | None
    lifetime: int | None
    ip: str | None
    user_agent: str
    now: datetime
    started: float  # time.monotonic() when the request reached refresh_token_rotate
    claims: Callable[[Session], Mapping[str, Any]] | None = None


class _Presented(Enum):
    """Where the presented token stands in its session's family."""

    CURRENT = "current"  # the one token that may be spent now
    PREVIOUS = "previous"  # the one spent by the last rotation; its successor is unused
    EARLIER = "earlier"  # spent before that, or revoked: presenting it is reuse
    UNKNOWN = "unknown"  # not a token this server gave out for this session


def _digest_matches(session: Session, digest: bytes) -> bool:
    stored = session.refresh_digest
    return stored is not None and hmac.compare_digest(bytes(stored), digest)


def _place(parsed: ParsedRefreshToken, digest: bytes, session: Session) -> _Presented:
    """Which token of the family this is. Only the current token is recognised by its digest;
    an earlier one must carry a MAC that verifies, so a made-up value is never taken for a
    replay (it would revoke the session)."""
    if _digest_matches(session, digest):
        return _Presented.CURRENT
    generation = session.rotations
    if not parsed.authentic or parsed.generation >= generation:
        # A later generation, or the current one with another random part, was never given
        # out: a request that lost a race made one, and it was dropped unseen.
        return _Presented.UNKNOWN
    if parsed.generation == generation - 1 and session.refresh_spent_at is not None:
        return _Presented.PREVIOUS
    return _Presented.EARLIER


def _refusal_before_spending(session: Session, issue: _Issue) -> str | None:
    """Why the session may not rotate at all (the same for every token of it), or None."""
    if issue.client_id is not None and session.client_id != issue.client_id:
        return "client_mismatch"  # RFC 6749 §6: the token must be the authenticated client's
    if session.revoked_at is not None:
        return "session_revoked"
    return None


def _rotate_unlocked(parsed: ParsedRefreshToken, digest: bytes, issue: _Issue) -> TokenPair | None:
    """The common case on PostgreSQL: read the session, then one conditional UPDATE.

    Nothing is locked and no transaction opened: the UPDATE replaces the digest only if it is
    still the presented token's, and under READ COMMITTED a concurrent UPDATE of the same row
    makes it wait and re-check that condition on the committed row, so exactly one of several
    requests with one token wins. None means "decide under the row lock": not the current
    token, the session or its user no longer allowed to refresh, SQLite, or the race was lost
    (what this request made is then dropped unseen).
    """
    connection = connections[router.db_for_write(Session)]
    if connection.vendor != "postgresql":
        return None
    if issue.claims is None:
        return _rotate_in_one_statement(parsed, digest, issue, connection)
    # One cursor for the read and the write: opening one runs Django's connection checks and
    # wrappers each time, a few per cent of a refresh (bench/README.md).
    with connection.cursor() as cursor:
        session = _session_for_rotation(parsed.session_id, cursor=cursor)
        if (
            session is None
            or not _digest_matches(session, digest)
            or _refusal_before_spending(session, issue) is not None
            or not session.is_live(issue.now)
            or _user_may_continue(session) is not None
        ):
            return None
        return _successor_issue(session, issue, replaces=digest, cursor=cursor)


def _rotate_in_one_statement(
    parsed: ParsedRefreshToken, digest: bytes, issue: _Issue, connection
) -> TokenPair | None:
    """The common case when the access token needs nothing but the session row (no client
    claims to map): one UPDATE that spends the presented token, and reads what the new access
    token needs, only if the rotation may happen (`_one_statement_sql`); the token is signed
    after it. No row: None, and the locked path decides (and audits) as for any other case.

    The successor's generation is known before the row is read: a token whose digest is the
    session's is of the session's generation (the digest covers the generation it names). If
    signing fails after the write (a key-store outage), the presented token is made current
    again (`_rotation_undo`), so the client's retry is not taken for a replay."""
    now = issue.now
    generation = parsed.generation + 1
    value, new_digest = refresh_token_new(session_id=parsed.session_id, generation=generation)
    idle_bound = now + timedelta(seconds=get_config().session_idle_timeout)
    sql, split, session_names, user_names = _one_statement_sql(
        connection.alias, issue.client_id is not None
    )
    # The presented token is spent at the instant of the write (see _successor_issue).
    spent_at = now + timedelta(seconds=time.monotonic() - issue.started)
    params = [new_digest, generation, spent_at, now, idle_bound, parsed.session_id, digest]
    params += [parsed.generation, now, now]
    if issue.client_id is not None:
        params.append(issue.client_id)
    row = fetchone(connection, sql, params)
    if row is None:
        return None
    alias = connection.alias
    session = _model_from_row(Session, alias, session_names, row[:split])
    session.user = _model_from_row(_user_model(), alias, user_names, row[split:])
    session.refresh_digest = new_digest
    session.rotations = generation
    session.refresh_spent_at = spent_at
    session.last_used_at = now
    session.idle_expires_at = min(session.expires_at, idle_bound)
    try:
        access, expires_in = _access_token(session, now=now, lifetime=issue.lifetime)
    except BaseException:
        _rotation_undo(session.pk, presented=digest, generation=parsed.generation, new=new_digest)
        raise
    if connection.in_atomic_block:
        _count_issued("refresh", issue.started)
    else:  # committed already (autocommit): count now, without on_commit's bookkeeping
        metrics.token_issued(flow="refresh", seconds=time.monotonic() - issue.started)
    return TokenPair(
        access_token=access,
        refresh_token=value,
        expires_in=expires_in,
        scope=session.scope,
        session=session,
    )


def _model_from_row(model: type[models.Model], alias: str, names: list[str], values) -> Any:
    """What `model.from_db(alias, names, values)` gives for a row of some of the model's
    columns: an instance that holds those attributes, loads the others on first use (Django
    tells deferred fields by their absence from __dict__) and is saved as an update. Without
    Model.__init__, which walks every field of the model to set or skip each one and sends
    pre_init and post_init (no receivers here): the two instances it saves were about 3 % of a
    refresh's CPU in-process. tests/sessions hold it to from_db."""
    instance = model.__new__(model)
    state = models.base.ModelState()
    state.adding = False
    state.db = alias
    instance._state = state
    instance.__dict__.update(zip(names, values, strict=True))
    return instance


def _rotation_undo(pk: uuid.UUID, *, presented: bytes, generation: int, new: bytes) -> None:
    """Make the presented token current again after a rotation whose successor was never
    handed out (its access token could not be signed); only while the row still holds that
    successor. The time the token before it was spent is not known any more: NULL, as after a
    grace-window reissue (a replay of that one then counts as reuse, never as a lost race)."""
    Session.objects.filter(pk=pk, refresh_digest=new).update(
        refresh_digest=presented, rotations=generation, refresh_spent_at=None
    )


# What the one-statement rotation reads back: what the access token and the response need.
_ONE_STATEMENT_SESSION_FIELDS = ("id", "user_id", "client_id", "scope", "audience")
_ONE_STATEMENT_SESSION_FIELDS += ("expires_at", "amr")
_ONE_STATEMENT_USER_FIELDS = ("id", "public_id")


@functools.cache
def _one_statement_sql(alias: str, with_client: bool) -> tuple[str, int, list[str], list[str]]:
    """The one-statement rotation's UPDATE, where its row's session columns end, and the
    attribute names of the session's and the user's columns in it.

    Its conditions are the rules of the two-statement path, in SQL: the presented token is the
    current one (its digest, which revoking a session clears: see _ROTATION_UPDATE_IF_CURRENT
    for why there is no `revoked_at IS NULL` here), of the session's generation, the session
    the client's, not expired by time or idleness (Session.is_live), its user active and
    without a password change since it began (_user_may_continue). tests/sessions hold the two
    paths to the same answers. Every column it sets is unindexed (a HOT update)."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    user = _user_model()
    session_fields = [f for f in _columns(Session) if f.attname in _ONE_STATEMENT_SESSION_FIELDS]
    user_fields = _user_columns(_ONE_STATEMENT_USER_FIELDS)
    assert not any(hasattr(f, "from_db_value") for f in (*session_fields, *user_fields))  # noqa: S101
    active = quote(user._meta.get_field("is_active").column)
    changed = quote(user._meta.get_field("password_changed_at").column)
    returning = ", ".join(
        [f"s.{quote(f.column)}" for f in session_fields]
        + [f"u.{quote(f.column)}" for f in user_fields]
    )
    sql = (
        f"UPDATE {quote(Session._meta.db_table)} s SET refresh_digest = %s, rotations = %s, "  # noqa: S608
        "refresh_spent_at = %s, last_used_at = %s, idle_expires_at = LEAST(s.expires_at, %s) "
        f"FROM {quote(user._meta.db_table)} u "
        "WHERE s.id = %s AND s.refresh_digest = %s AND s.rotations = %s "
        f"AND u.{quote(user._meta.pk.column)} = s.user_id "
        "AND s.expires_at > %s AND s.idle_expires_at > %s "
        f"AND u.{active} AND (u.{changed} IS NULL OR u.{changed} <= s.created_at)"
    )
    if with_client:
        sql += " AND s.client_id = %s"
    sql += f" RETURNING {returning}"
    return (
        sql,
        len(session_fields),
        [f.attname for f in session_fields],
        [f.attname for f in user_fields],
    )


def _rotate_locked(parsed: ParsedRefreshToken, digest: bytes, issue: _Issue) -> TokenPair:
    """Every case but the common one, decided under the session's row lock."""
    failure: RefreshError | None = None
    audit: tuple[str, dict] | None = None
    with transaction.atomic():
        session = (
            Session.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(pk=parsed.session_id)
            .first()
        )
        if session is None:
            raise _refused("unknown")
        reason = _refusal_before_spending(session, issue)
        if reason is not None:
            raise _refused(reason)
        place = _place(parsed, digest, session)
        if place is _Presented.UNKNOWN:
            raise _refused("unknown")
        spent_at = session.refresh_spent_at
        if place is _Presented.CURRENT:
            failure, audit = _check_live(session, issue.now)
            if failure is None:
                return _successor_issue(session, issue, replaces=None)
        else:
            failure, audit = _spent_token_presented(
                session, place, spent_at, generation=parsed.generation, issue=issue
            )
            if failure is None:
                return _successor_issue(session, issue, replaces=None, grace=True)
    # Revocations made above are committed; now report the failure (and audit it).
    _failure_report(session, failure, audit, issue)


def _spent_token_presented(
    session: Session,
    place: _Presented,
    spent_at: datetime | None,
    *,
    generation: int | None,
    issue: _Issue,
) -> tuple[RefreshError | None, tuple[str, dict] | None]:
    """Decide what presenting a spent (or revoked) token of the session means: a lost race, a
    grace-window retry (None, None: reissue), or reuse, which revokes the session."""
    now = issue.now
    if place is _Presented.PREVIOUS:
        if issue.presented_at < spent_at:
            # Presented while still unspent; a concurrent request spent it first. Not a replay.
            return RefreshError("concurrent_use"), None
        grace = get_config().refresh_reuse_grace_seconds
        if grace > 0 and now - spent_at <= timedelta(seconds=grace):
            return _check_live(session, now)
    _revoke_rows(session, Reason.REUSE_DETECTED, now)
    logger.warning("refresh token reuse detected; session %s revoked", session.id)
    return RefreshError("reuse_detected"), (
        events.REFRESH_REUSE_DETECTED,
        {
            # The token spent by the last rotation while its successor was unused (most likely
            # a lost response), or an older one after its successor was used (most likely theft).
            "replayed": "last_spent" if place is _Presented.PREVIOUS else "earlier",
            "token_generation": generation,
            "rotations": session.rotations,
        },
    )


def _check_live(session: Session, now: datetime) -> tuple[RefreshError | None, tuple | None]:
    if not session.is_live(now):
        return RefreshError("expired"), None
    reason = _user_may_continue(session)
    if reason is not None:
        _revoke_rows(session, reason, now)
        return RefreshError(reason), (events.SESSION_REVOKED, {"reason": reason})
    return None, None


def _failure_report(
    session: Session, failure: RefreshError, audit: tuple[str, dict] | None, issue: _Issue
):
    if audit is not None:
        event, details = audit
        audit_event_record(
            event=event,
            user=session.user,
            client_id=session.client_id,
            session_id=session.id,
            ip=issue.ip,
            user_agent=issue.user_agent,
            details=details,
        )
    replayed = audit[1].get("replayed") if audit is not None else None
    metrics.refresh_failed(reason=failure.reason, replayed=replayed)
    raise failure


def _successor_issue(
    session: Session,
    issue: _Issue,
    *,
    replaces: bytes | None,
    grace: bool = False,
    cursor: CursorWrapper | None = None,
) -> TokenPair | None:
    """Make the next generation's pair and store it in the session row.

    `replaces`: the digest the row must still hold (the unlocked path); None under the row lock.
    None is returned if the row no longer held it. `grace`: a grace-window reissue, which
    revokes the unused successor (its digest is overwritten) and is audited.
    """
    now = issue.now
    generation = session.rotations + 1
    value, digest = refresh_token_new(session_id=session.id, generation=generation)
    idle_expires_at = _refresh_expiry(session, now)
    # Signed before the write, so the write (and the row lock, if held) lasts as briefly as can be.
    extra = issue.claims(session) if issue.claims is not None else None
    access, expires_in = _access_token(
        session, now=now, lifetime=issue.lifetime, extra_claims=extra
    )
    # The presented token becomes spent at the instant of the write: a request that arrived
    # before it saw an unspent token. A grace reissue spends nothing (it revokes the successor),
    # so afterwards no earlier token is "the one just spent".
    spent_at = None if grace else now + timedelta(seconds=time.monotonic() - issue.started)
    changes = {
        "refresh_digest": digest,
        "rotations": generation,
        "refresh_spent_at": spent_at,
        "last_used_at": now,
        "idle_expires_at": idle_expires_at,
    }
    if not _session_write(session, changes, replaces=replaces, cursor=cursor):
        return None
    for name, new in changes.items():
        setattr(session, name, new)
    if grace:
        audit_event_record(
            event=events.TOKEN_REFRESHED,
            user=session.user,
            client_id=session.client_id,
            session_id=session.id,
            ip=issue.ip,
            user_agent=issue.user_agent,
            details={"grace": True, "rotations": generation},
        )
    _count_issued("refresh", issue.started)
    return TokenPair(
        access_token=access,
        refresh_token=value,
        expires_in=expires_in,
        scope=session.scope,
        session=session,
    )


# The rotation's write on PostgreSQL, written once: compiling the ORM's UPDATE cost more CPU than
# the rest of a refresh (bench/README.md). Every column it sets is unindexed (a HOT update).
_ROTATION_UPDATE = (
    "UPDATE tokens_session SET refresh_digest = %s, rotations = %s, refresh_spent_at = %s, "
    "last_used_at = %s, idle_expires_at = %s WHERE id = %s"
)
# Revoking a session clears its digest (`_sessions_end`), so matching the digest alone also
# refuses a session revoked since it was read. (A `revoked_at IS NULL` test here would match the
# predicate of the partial index tokens_session_user_live, which the planner then chose on
# tables without statistics, scanning every live session on each refresh.)
_ROTATION_UPDATE_IF_CURRENT = _ROTATION_UPDATE + " AND refresh_digest = %s RETURNING rotations"


def _session_write(
    session: Session,
    changes: dict,
    *,
    replaces: bytes | None,
    cursor: CursorWrapper | None = None,
) -> bool:
    """Store `changes` in the session row (only if it still holds `replaces`, when given);
    through `cursor` if the caller has one open on PostgreSQL."""
    if cursor is None:
        connection = connections[router.db_for_write(Session)]
        if connection.vendor != "postgresql":
            rows = Session.objects.filter(pk=session.pk)
            if replaces is not None:
                rows = rows.filter(refresh_digest=replaces)
            return bool(rows.update(**changes))
        with connection.cursor() as cursor:
            return _session_update(cursor, session, changes, replaces)
    return _session_update(cursor, session, changes, replaces)


def _session_update(
    cursor: CursorWrapper, session: Session, changes: dict, replaces: bytes | None
) -> bool:
    params = [*changes.values(), session.pk]
    if replaces is None:
        cursor.execute(_ROTATION_UPDATE, params)
        return True
    cursor.execute(_ROTATION_UPDATE_IF_CURRENT, [*params, replaces])
    return cursor.fetchone() is not None


def _rotate_legacy(digest: bytes, issue: _Issue) -> TokenPair:
    """A token of the old format (a RefreshToken row), under the token's and session's locks.

    Its current token rotates into the new format; a spent one is a lost race, or reuse. The
    one spent by the rotation that moved the session to the new format stands where the new
    format's "previous" token does (grace window included); older ones are reuse.
    """
    failure: RefreshError | None = None
    audit: tuple[str, dict] | None = None
    with transaction.atomic():
        token = (
            RefreshToken.objects.select_for_update(of=("self", "session"))
            .select_related("session", "session__user")
            .filter(token_hash=digest)
            .first()
        )
        if token is None:
            raise _refused("unknown")
        session = token.session
        reason = _refusal_before_spending(session, issue)
        if reason is not None:
            raise _refused(reason)
        live = token.consumed_at is None and token.revoked_at is None
        if live and session.refresh_digest is None:
            failure, audit = _check_live(session, issue.now)
            if failure is None and token.expires_at <= issue.now:
                failure = RefreshError("expired")
            if failure is None:
                pair = _successor_issue(session, issue, replaces=None)
                token.consumed_at = session.refresh_spent_at
                token.save(update_fields=["consumed_at"])
                return pair
        else:
            moved_on = (
                session.refresh_digest is not None
                and token.consumed_at is not None
                and token.consumed_at == session.refresh_spent_at
            )
            if token.consumed_at is not None and issue.presented_at < token.consumed_at:
                failure = RefreshError("concurrent_use")
            else:
                place = _Presented.PREVIOUS if moved_on else _Presented.EARLIER
                failure, audit = _spent_token_presented(
                    session, place, token.consumed_at, generation=None, issue=issue
                )
                if failure is None:
                    return _successor_issue(session, issue, replaces=None, grace=True)
    _failure_report(session, failure, audit, issue)


# --- Reading a session with its user in one statement ----------------------------------------
# session_get runs on every refresh and every bearer-authenticated call; the ORM compiled the
# same query afresh each time, which cost more CPU than the query (bench/README.md).


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
def _session_sql(alias: str, user_fields: tuple[str, ...] | None = None) -> str:
    """A session and its user by session id; only `user_fields` of the user, if given."""
    quote = connections[alias].ops.quote_name
    user = _user_model()
    columns = _select_list(alias, ("s", Session))
    columns += ", " + ", ".join(f"u.{quote(f.column)}" for f in _user_columns(user_fields))
    return (
        f"SELECT {columns} FROM {quote(Session._meta.db_table)} s "  # noqa: S608 - names only
        f"JOIN {quote(user._meta.db_table)} u ON u.{quote(user._meta.pk.column)} = s.user_id "
        "WHERE s.id = %s"
    )


def _user_columns(names: tuple[str, ...] | None) -> tuple:
    """The user model's columns, or those named, in the model's order (as Model.from_db wants
    a subset)."""
    fields = _columns(_user_model())
    return fields if names is None else tuple(f for f in fields if f.attname in names)


# What a rotation reads of the user: the id, the `sub`, and whether the user may go on. The
# rest of the row (the password hash, names, email, timestamps) is neither read nor converted.
_ROTATION_USER_FIELDS = ("id", "public_id", "is_active", "password_changed_at")


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
        connection = connections[alias]
        for index, field in converting:
            values[index] = field.from_db_value(values[index], None, connection)
    return model.from_db(alias, names, values)


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
    """The session a refresh token of this server (spent or not) belongs to, or None."""
    parsed = refresh_token_parse(value)
    if parsed is not None:
        session = session_get(sid=parsed.session_id)
        if session is None:
            return None
        if parsed.authentic or _digest_matches(session, refresh_token_digest(value)):
            return session
        return None
    if not isinstance(value, str) or not _LEGACY_TOKEN_RE.match(value):
        return None
    token = (
        RefreshToken.objects.select_related("session", "session__user")
        .filter(token_hash=_legacy_digest(value))
        .first()
    )
    return token.session if token else None


@dataclass(frozen=True, slots=True)
class RefreshTokenState:
    """What introspection (RFC 7662) says about a refresh token: its session, and whether it is
    the session's current token (only that one can still be used)."""

    session: Session
    current: bool
    issued_at: datetime
    expires_at: datetime


def refresh_token_inspect(*, value: str) -> RefreshTokenState | None:
    """The state of a refresh token this server issued, or None if it did not issue it."""
    parsed = refresh_token_parse(value)
    if parsed is not None:
        session = session_get(sid=parsed.session_id)
        if session is None:
            return None
        if _digest_matches(session, refresh_token_digest(value)):
            issued = session.last_used_at if session.rotations else session.created_at
            return RefreshTokenState(session, True, issued, session.idle_expires_at)
        if not parsed.authentic:
            return None
        return RefreshTokenState(session, False, session.created_at, session.idle_expires_at)
    if not isinstance(value, str) or not _LEGACY_TOKEN_RE.match(value):
        return None
    token = (
        RefreshToken.objects.select_related("session", "session__user")
        .filter(token_hash=_legacy_digest(value))
        .first()
    )
    if token is None:
        return None
    current = token.consumed_at is None and token.revoked_at is None
    return RefreshTokenState(token.session, current, token.created_at, token.expires_at)


def user_sessions_revoke(
    *, user, reason: str, now: datetime | None = None, keep: Session | None = None
) -> int:
    """End every live session of `user` (logout-all, password change, deactivation), except
    `keep` when given (the account page's "end all other sessions": the browser in use)."""
    now = now or timezone.now()
    with transaction.atomic():
        sessions = Session.objects.select_for_update().filter(user=user, revoked_at__isnull=True)
        if keep is not None:
            sessions = sessions.exclude(pk=keep.pk)
        ids = list(sessions.values_list("pk", flat=True))
        if ids:
            _sessions_end(ids, reason, now)
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


# What deciding whether a session's tokens may be used reads (session_is_usable): the session's
# deadlines and revocation, its user's state. Introspection of an access token needs no more.
_LIVENESS_SESSION_FIELDS = (
    "id",
    "user_id",
    "created_at",
    "expires_at",
    "idle_expires_at",
    "revoked_at",
)
_LIVENESS_USER_FIELDS = ("id", "is_active", "password_changed_at")


def session_usable_get(*, sid, now: datetime | None = None) -> bool | None:
    """session_is_usable of the session `sid` as of `now`, or None if there is no such session,
    for introspecting an access token: on PostgreSQL one statement that answers the question
    itself (`_usable_sql`), so no row is converted or model built; nothing else is read."""
    try:
        pk = sid if isinstance(sid, uuid.UUID) else uuid.UUID(str(sid))
    except (ValueError, TypeError, AttributeError):
        return None
    now = now or timezone.now()
    alias = router.db_for_read(Session)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        session = (
            Session.objects.select_related("user")
            .only(*_LIVENESS_SESSION_FIELDS, *(f"user__{f}" for f in _LIVENESS_USER_FIELDS))
            .filter(pk=pk)
            .first()
        )
        return None if session is None else session_is_usable(session=session, now=now)
    row = fetchone(connection, _usable_sql(alias), [now, now, pk])
    return None if row is None else row[0] is True


@functools.cache
def _usable_sql(alias: str) -> str:
    """session_is_usable in SQL (Session.is_live and _user_may_continue): not revoked, before
    both deadlines, the user active and without a password change since the session began.
    tests/sessions hold it to the Python rule in every state. The rule is in the select list,
    not in WHERE: the session is found by primary key alone (see _ROTATION_UPDATE_IF_CURRENT on
    partial-index predicates)."""
    quote = connections[alias].ops.quote_name
    user = _user_model()
    active = quote(user._meta.get_field("is_active").column)
    changed = quote(user._meta.get_field("password_changed_at").column)
    return (
        "SELECT (s.revoked_at IS NULL AND s.expires_at > %s AND s.idle_expires_at > %s "  # noqa: S608 - names only
        f"AND u.{active} AND (u.{changed} IS NULL OR u.{changed} <= s.created_at)) "
        f"FROM {quote(Session._meta.db_table)} s "
        f"JOIN {quote(user._meta.db_table)} u ON u.{quote(user._meta.pk.column)} = s.user_id "
        "WHERE s.id = %s"
    )


def _session_for_rotation(pk: uuid.UUID, *, cursor: CursorWrapper) -> Session | None:
    """session_get for the rotation's unlocked read (PostgreSQL), through `cursor`: the user
    with only _ROTATION_USER_FIELDS loaded (the others deferred; nothing on this path reads
    them)."""
    alias = cursor.db.alias
    cursor.execute(_session_sql(alias, _ROTATION_USER_FIELDS), [pk])
    row = cursor.fetchone()
    if row is None:
        return None
    split, user, names = _rotation_row_layout()
    session = _instance(Session, alias, row[:split])
    session.user = user.from_db(alias, names, row[split:])
    return session


@functools.cache
def _rotation_row_layout() -> tuple[int, type, list[str]]:
    """Where the session's columns end in _session_for_rotation's row, the user model, and the
    attribute names of the user's columns that follow (worked out once, not per refresh)."""
    user = _user_model()
    return len(_columns(Session)), user, [f.attname for f in _user_columns(_ROTATION_USER_FIELDS)]


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
    names = {
        BROWSER_CLIENT_ID: gettext("Browser sign-in"),
        FIRST_PARTY_CLIENT_ID: gettext("First-party app"),
    }
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


PURGE_ORDERS = ("auto", "index", "heap")


def sessions_purge(
    *,
    ended_before: datetime,
    batch_size: int = 5000,
    dry_run: bool = False,
    order: str = "auto",
    max_rate: float | None = None,
    stats: dict | None = None,
) -> tuple[int, int]:
    """Delete sessions that ended before `ended_before`, in batches; (sessions, old-format
    refresh tokens) counted. Each batch is its own short transaction. `order` (PostgreSQL):
    "index" walks the purge's indexes in key order, "heap" the table in physical order, "auto"
    picks the cheaper one for the estimated number of ended sessions (_PostgresPurge).
    `max_rate`: sessions deleted per second at most, on average from the start (the purge
    sleeps between batches when it is ahead); None or 0 for no limit. `stats`, if given, gets
    "slept_seconds": the time spent sleeping for it."""
    if order not in PURGE_ORDERS:
        raise ValueError(f"order must be one of {PURGE_ORDERS}")
    if max_rate is not None and max_rate < 0:
        raise ValueError("max_rate must not be negative")
    pace = _Pace(max_rate or None, stats)
    ended = Session.objects.filter(_ended_before(ended_before))
    if dry_run:
        return ended.count(), RefreshToken.objects.filter(session__in=ended).count()
    alias = router.db_for_write(Session)
    if connections[alias].vendor == "postgresql":
        return _PostgresPurge(alias, ended_before, batch_size, order, pace).run()
    sessions = tokens = 0
    while True:
        with transaction.atomic():
            ids = list(ended.values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            tokens += RefreshToken.objects.filter(session_id__in=ids).delete()[0]
            sessions += Session.objects.filter(pk__in=ids).delete()[0]
        pace.wait(sessions)
    return sessions, tokens


class _Pace:
    """Keeps the purge at `max_rate` sessions a second on average (None: no limit): after each
    batch, sleep until the sessions deleted so far are no more than the rate allows. The
    purge's batches write WAL and dirty pages at a rate the refreshes share the disk with
    (bench/README.md "Purge")."""

    def __init__(self, max_rate: float | None, stats: dict | None = None):
        self.max_rate = max_rate
        self.started = time.monotonic()
        self.stats = stats if stats is not None else {}
        self.stats["slept_seconds"] = 0.0

    def wait(self, deleted: int) -> None:
        if not self.max_rate:
            return
        ahead = deleted / self.max_rate - (time.monotonic() - self.started)
        if ahead > 0:
            time.sleep(ahead)
            self.stats["slept_seconds"] += ahead


# The purge's batch scans must walk the index in key order and stop after a batch: a bitmap scan
# (which the planner picks when it underestimates the range) reads the whole remaining range and
# sorts it, for every batch, which is quadratic in the number of ended sessions.
PURGE_SCAN_SETTINGS = ("SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_sort = off")
# A purge batch lost in a crash is deleted again by the next purge: its commit need not wait for
# the WAL flush (PostgreSQL's asynchronous commit keeps the database consistent; only the last
# batches' deletions can be lost), and refreshes committing meanwhile share fewer flushes with it.
# The pages a batch dirties and then evicts from shared_buffers are handed to the kernel to write
# every 256 kB (backend_flush_after; 0, never, by default): otherwise gigabytes of them wait in
# the page cache until the kernel's dirty limits make it write them all at once, and every
# refresh's commit waits behind that flood for its WAL flush (bench/README.md "Purge").
PURGE_COMMIT_SETTINGS = (
    "SET LOCAL synchronous_commit = off",
    "SET LOCAL backend_flush_after = '256kB'",
)


class _PostgresPurge:
    """The purge on PostgreSQL, one statement per batch, in one of two orders.

    **Index order.** Sessions that ended by time are found through `ends_not_before` (a lower
    bound of the end by time, which a refresh does not move: see Session). A session found there
    still live gets its bound moved up to its idle deadline and leaves the range until then, so
    each session is looked at about once per idle period, not at every purge. Revoked sessions
    are found through the partial index on `revoked_at`. Each scan goes on from the key where the
    last batch stopped, so it never walks again over the entries of rows it has deleted.

    **Heap order.** The table is walked in physical order, a range of pages per batch (a TID
    range scan), and what ended in it is deleted (live rows whose bound is behind get it moved,
    as above). The key order of `ends_not_before` (a session's first idle deadline) is not the
    order rows sit in the table, which is about their end: when the table is larger than the
    buffer cache, each session deleted in key order costs a random page read and a page written
    back (with a full-page image in the WAL after each checkpoint), and a page comes back once
    per ended session on it. In physical order each page is read, dirtied and written once: at
    10 million ended sessions that was the difference between 20 and over 100 thousand
    sessions a second (bench/README.md "Purge"). It reads the whole table, so "auto" takes it
    only when the planner expects at least one ended session per four pages (random_page_cost
    is 4 sequential pages); a purge that runs often and finds few takes the indexes.

    Each batch is one statement in its own short transaction: it picks the batch, moves the
    bounds of the live ones, clears or deletes what refers to the ended ones (the relations'
    on_delete, read from the models) and deletes them, by row address. No session id travels
    to Python and back: the database does the whole batch.
    """

    def __init__(
        self,
        alias: str,
        cutoff: datetime,
        batch_size: int,
        order: str = "auto",
        pace: _Pace | None = None,
    ):
        self.alias, self.cutoff, self.batch_size, self.order = alias, cutoff, batch_size, order
        self.pace = pace or _Pace(None)
        self.sessions = self.tokens = 0

    def run(self) -> tuple[int, int]:
        self._floors_fill()
        if self._heap_order():
            self._pass()
        else:
            self._scan("ends_not_before")
            self._scan("revoked_at")
        return self.sessions, self.tokens

    def _floors_fill(self) -> None:
        """Rows written before ends_not_before existed (or by the previous release during an
        upgrade) have none: their idle deadline is one."""
        sql = (
            "UPDATE tokens_session SET ends_not_before = idle_expires_at WHERE id IN "
            "(SELECT id FROM tokens_session WHERE ends_not_before IS NULL LIMIT %s)"
        )
        while True:
            with connections[self.alias].cursor() as cursor:
                cursor.execute(sql, [self.batch_size])
                if cursor.rowcount < self.batch_size:
                    return

    def _heap_order(self) -> bool:
        if self.order != "auto":
            return self.order == "heap"
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "EXPLAIN (FORMAT JSON) SELECT 1 FROM tokens_session "
                "WHERE ends_not_before < %(cutoff)s OR revoked_at < %(cutoff)s",
                {"cutoff": self.cutoff},
            )
            plan = cursor.fetchone()[0]
            if isinstance(plan, str):
                plan = json.loads(plan)
            candidates = plan[0]["Plan"]["Plan Rows"]
            cursor.execute(
                "SELECT pg_relation_size('tokens_session') / current_setting('block_size')::int"
            )
            pages = cursor.fetchone()[0]
        return candidates * 4 >= pages

    def _batch(self, sql: str, params: dict, settings: tuple[str, ...]) -> tuple:
        with transaction.atomic(using=self.alias), connections[self.alias].cursor() as cursor:
            for setting in (*settings, *PURGE_COMMIT_SETTINGS):
                cursor.execute(setting)
            cursor.execute(sql, params)
            found, last_key, sessions, tokens = cursor.fetchone()
        self.sessions += sessions
        self.tokens += tokens
        self.pace.wait(self.sessions)
        return found, last_key

    def _scan(self, column: str) -> None:
        params = {
            "cutoff": self.cutoff,
            "after": datetime.min.replace(tzinfo=self.cutoff.tzinfo),
            "size": self.batch_size,
        }
        while True:
            found, last_key = self._batch(_purge_sql(column), params, PURGE_SCAN_SETTINGS)
            if found < self.batch_size:
                return
            # `>=` from the last key: rows sharing it are seen again only if neither deleted
            # nor moved out of the range, which every row of a batch is.
            params["after"] = last_key

    def _pass(self) -> None:
        """The table's pages as they are now, about `batch_size` rows' worth per batch (rows
        added meanwhile are new, so live)."""
        with connections[self.alias].cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_size(oid) / current_setting('block_size')::int, "
                "reltuples, relpages FROM pg_class WHERE oid = 'tokens_session'::regclass"
            )
            pages, tuples, counted_pages = cursor.fetchone()
        per_page = tuples / counted_pages if tuples > 0 and counted_pages > 0 else 32
        step = max(1, int(self.batch_size / per_page))
        params = {"cutoff": self.cutoff}
        for first in range(0, pages, step):
            params["first"], params["end"] = f"({first},0)", f"({first + step},0)"
            self._batch(_purge_sql("heap"), params, ())


def session_references() -> list:
    """Every relation that refers to a session (hidden ones included: an authorization code's
    links have no reverse accessor), as the purge must treat them."""
    return [
        field
        for field in Session._meta.get_fields(include_hidden=True)
        if field.auto_created and not field.concrete and (field.one_to_many or field.one_to_one)
    ]


@functools.cache
def _purge_sql(column: str) -> str:
    """One batch of the purge over the index on `column` (ends_not_before: sessions ended by
    time, and live ones whose bound is moved; revoked_at: revoked sessions), or over a range of
    the table's pages (`column` "heap": both kinds). It returns (rows
    looked at, the last key, sessions deleted, refresh tokens deleted). Only model metadata
    (table and column names) is formatted into it; values are parameters.

    No two steps of the statement may modify one row (only one would take effect): so each
    table that refers to a session is updated by one step whatever the number of its links (an
    authorization code has two), and a live session of the batch whose bound moves has its own
    link to a deleted parent cleared in that same step.
    """
    by_time = column in ("ends_not_before", "heap")
    if column == "heap":  # a range of pages: what ended in it, and live rows whose bound is behind
        candidates = (
            "SELECT id, ctid AS tid, NULL::timestamptz AS key, coalesce(idle_expires_at < "
            "%(cutoff)s OR revoked_at < %(cutoff)s, false) AS ended FROM tokens_session "
            "WHERE ctid >= %(first)s::tid AND ctid < %(end)s::tid "
            "AND (ends_not_before < %(cutoff)s OR revoked_at < %(cutoff)s)"
        )
    else:
        ended = "idle_expires_at < %(cutoff)s" if by_time else "true"
        candidates = (
            f"SELECT id, ctid AS tid, {column} AS key, {ended} AS ended "  # noqa: S608
            f"FROM tokens_session WHERE {column} >= %(after)s AND {column} < %(cutoff)s "
            f"ORDER BY {column} LIMIT %(size)s"
        )
    steps = [
        f"candidates AS MATERIALIZED ({candidates})",
        "batch AS (SELECT id, tid FROM candidates WHERE ended)",
    ]
    ids = "(SELECT id FROM batch)"
    cleared: dict[str, list[str]] = {}
    cascaded = []
    for relation in session_references():
        table, link = relation.related_model._meta.db_table, relation.field.column
        if relation.on_delete is models.SET_NULL:
            cleared.setdefault(table, []).append(link)
        elif relation.on_delete is models.CASCADE and relation.related_model is RefreshToken:
            name = f"r{len(steps)}"
            deleted = f"DELETE FROM {table} WHERE {link} IN {ids} RETURNING 1"  # noqa: S608
            steps.append(f"{name} AS ({deleted})")
            cascaded.append(f"(SELECT count(*) FROM {name})")  # noqa: S608
        else:  # a new relation must say here how the purge treats it
            raise NotImplementedError(f"purge: {table}.{link} on_delete={relation.on_delete}")

    def clearing(links: list[str]) -> list[str]:
        return [f"{link} = CASE WHEN {link} IN {ids} THEN NULL ELSE {link} END" for link in links]

    own = cleared.pop(Session._meta.db_table, [])
    if by_time:
        sets = ", ".join(["ends_not_before = s.idle_expires_at", *clearing(own)])
        steps.append(
            f"bumped AS (UPDATE tokens_session s SET {sets} FROM candidates c "  # noqa: S608
            "WHERE s.ctid = c.tid AND s.id = c.id AND NOT c.ended)"
        )
    if own:
        linked = " OR ".join(f"{link} IN {ids}" for link in own)
        steps.append(
            f"r{len(steps)} AS (UPDATE tokens_session SET {', '.join(clearing(own))} "  # noqa: S608
            f"WHERE ({linked}) AND id NOT IN (SELECT id FROM candidates))"
        )
    for table, links in cleared.items():
        linked = " OR ".join(f"{link} IN {ids}" for link in links)
        steps.append(
            f"r{len(steps)} AS (UPDATE {table} SET {', '.join(clearing(links))} WHERE {linked})"  # noqa: S608
        )
    steps.append(
        "gone AS (DELETE FROM tokens_session s USING batch "
        "WHERE s.ctid = batch.tid AND s.id = batch.id RETURNING 1)"
    )
    counted = " + ".join(cascaded) or "0"
    return (
        f"WITH {', '.join(steps)} SELECT (SELECT count(*) FROM candidates), "  # noqa: S608
        f"(SELECT max(key) FROM candidates), (SELECT count(*) FROM gone), {counted}"
    )


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
            _sessions_end([s.pk for s in ended], reason, now)
            for session in ended:
                session.revoked_at, session.revoke_reason = now, reason
                session.refresh_digest = None
    return ended
