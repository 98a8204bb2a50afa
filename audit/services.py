"""Recording security events: one database row and one JSON log line per event; removing them
after the retention (`audit_events_purge`; the partitions themselves are in audit/partitions.py)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ipaddress
import json
import logging
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, router
from django.utils import timezone

from accounts.network import client_ip
from audit.events import EventType
from audit.models import CLIENT_ID_MAX_LENGTH, USER_AGENT_MAX_LENGTH, AuthEvent
from audit.partitions import (
    TrailChange,
    audit_leftover_events_delete,
    audit_partitions_drop_expired,
    audit_table_is_partitioned,
)
from authserver.logs import JsonMessage

logger = logging.getLogger("authserver.audit")
_internal_logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
# EventType.values builds a new list from the enum on every access: look up in a set instead.
_EVENT_TYPES = frozenset(EventType.values)
# Detail values are for people reading the trail; anything longer is cut (attacker-supplied
# strings must not bloat rows or log lines).
DETAIL_STRING_MAX_LENGTH = 512
_DETAIL_MAX_DEPTH = 5

# Keys whose value is, or may be, a credential. Matching is on the key (lower case, "-" read as
# "_"), so callers cannot store a secret by accident; values are not inspected.
_SENSITIVE_KEYS = frozenset(
    {
        "code",
        "auth_code",
        "authorization_code",
        "code_verifier",
        "device_code",
        "user_code",
        "otp",
        "pin",
        "pwd",
        "jwt",
        "assertion",
        "key",
        "api_key",
        "session_key",
        "hash",
        "password_hash",
    }
)
_SENSITIVE_PARTS = ("password", "passwd", "secret", "private", "credential", "cookie", "pem")
_SENSITIVE_SUFFIXES = ("token", "authorization")


def detail_key_is_sensitive(key: str) -> bool:
    name = str(key).strip().lower().replace("-", "_")
    return (
        name in _SENSITIVE_KEYS
        or any(part in name for part in _SENSITIVE_PARTS)
        or name.endswith(_SENSITIVE_SUFFIXES)
    )


class _Encoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        try:
            return super().default(o)
        except TypeError:
            return str(o)


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > _DETAIL_MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        clean = {}
        for key, item in value.items():
            if detail_key_is_sensitive(key):
                _internal_logger.warning("audit detail %r redacted: keys naming secrets", str(key))
                clean[str(key)] = REDACTED
            else:
                clean[str(key)] = _scrub(item, depth + 1)
        return clean
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item, depth + 1) for item in value]
    if isinstance(value, str) and len(value) > DETAIL_STRING_MAX_LENGTH:
        return value[:DETAIL_STRING_MAX_LENGTH] + "..."
    return value


def audit_details_clean(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """`details` as plain JSON types with every secret-named key redacted."""
    if not details:
        return {}
    return json.loads(json.dumps(_scrub(details), cls=_Encoder))


def _valid_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return None


def _printable(text: str, limit: int) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def audit_event_prepare(
    *,
    event: str,
    user=None,
    request=None,
    ip: str | None = None,
    user_agent: str | None = None,
    client_id: str = "",
    session_id=None,
    details: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> AuthEvent:
    """Build and check an event without storing it (arguments as for `audit_event_record`).

    For a service that stores the event inside its own statement (sessions.services, the refresh
    rotation) with `audit_event_insert_sql` / `_params`, then calls `audit_event_stored`.
    """
    if event not in _EVENT_TYPES:
        raise ValueError(f"unknown audit event type {event!r}; add it to audit.events.EventType")
    if request is not None:
        if ip is None:
            ip = client_ip(request)
        if user_agent is None:
            user_agent = request.META.get("HTTP_USER_AGENT", "")
    if session_id is not None and not isinstance(session_id, uuid.UUID):
        session_id = uuid.UUID(str(session_id))
    user_pk = getattr(user, "pk", None)
    return AuthEvent(
        event_type=event,
        occurred_at=occurred_at or timezone.now(),
        user=user if user_pk is not None else None,
        user_public_id=getattr(user, "public_id", None),
        client_id=_printable(client_id or "", CLIENT_ID_MAX_LENGTH),
        session_id=session_id,
        ip=_valid_ip(ip),
        user_agent=_printable(user_agent or "", USER_AGENT_MAX_LENGTH),
        details=audit_details_clean(details),
    )


def audit_event_record(
    *,
    event: str,
    user=None,
    request=None,
    ip: str | None = None,
    user_agent: str | None = None,
    client_id: str = "",
    session_id=None,
    details: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> AuthEvent:
    """Store one AuthEvent and emit it as one JSON line on the "authserver.audit" logger.

    `request`, when given, supplies the IP (accounts.network.client_ip, which applies the proxy
    policy) and user agent unless `ip` / `user_agent` are passed explicitly. Secret-named
    detail keys are redacted (see `detail_key_is_sensitive`). An unknown `event` is a
    programming error and raises ValueError.
    """
    row = audit_event_prepare(
        event=event,
        user=user,
        request=request,
        ip=ip,
        user_agent=user_agent,
        client_id=client_id,
        session_id=session_id,
        details=details,
        occurred_at=occurred_at,
    )
    audit_event_store(row)
    return row


def audit_event_store(row: AuthEvent) -> None:
    """Insert a prepared event and emit its log line."""
    alias = router.db_for_write(AuthEvent)
    if not connections[alias].features.can_return_columns_from_insert:
        row.save(using=alias, force_insert=True)
        _log_event(row)
        return
    with connections[alias].cursor() as cursor:
        cursor.execute(audit_event_insert_sql(alias), audit_event_insert_params(row, alias))
        pk = cursor.fetchone()[0]
    audit_event_stored(row, pk, alias)


_INSERT_FIELDS = tuple(f for f in AuthEvent._meta.concrete_fields if not f.primary_key)


@functools.cache
def audit_event_insert_sql(alias: str, only_if_rows_in: str | None = None) -> str:
    """`INSERT ... RETURNING id` of one event, with `audit_event_insert_params` as parameters.

    Built once per database: the ORM compiled the same INSERT afresh on every call, which cost
    more CPU than the insert itself on the sign-in and refresh paths (bench/README.md). No model
    signals are sent; nothing listens for AuthEvent saves (auditing is an explicit call).
    `only_if_rows_in` names a common table expression of the same statement: the event is
    inserted once per row it returns (sessions/services.py inserts it only if the spend happened).
    """
    quote = connections[alias].ops.quote_name
    placeholders = ", ".join(["%s"] * len(_INSERT_FIELDS))
    source = (
        f"VALUES ({placeholders})"
        if only_if_rows_in is None
        else f"SELECT {placeholders} FROM {quote(only_if_rows_in)}"  # noqa: S608 - a CTE name
    )
    # Only names from the model's own metadata go into the text; every value is a parameter.
    return "INSERT INTO {} ({}) {} RETURNING {}".format(
        quote(AuthEvent._meta.db_table),
        ", ".join(quote(f.column) for f in _INSERT_FIELDS),
        source,
        quote(AuthEvent._meta.pk.column),
    )


def audit_event_insert_params(row: AuthEvent, alias: str) -> list:
    """A prepared event's values, each prepared by its field exactly as Model.save() does."""
    connection = connections[alias]
    return [f.get_db_prep_save(getattr(row, f.attname), connection) for f in _INSERT_FIELDS]


def audit_event_stored(row: AuthEvent, pk: int, alias: str) -> None:
    """The prepared event was inserted with id `pk`: mark it saved and emit its log line."""
    row.pk = pk
    row._state.adding = False
    row._state.db = alias
    _log_event(row)


# Set by audit_echo_muted: events are stored, their log lines not written.
_echo_muted: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "audit_echo_muted", default=False
)


@contextlib.contextmanager
def audit_echo_muted() -> Iterator[None]:
    """Events recorded inside are stored as always (the AuthEvent row is the audit record) but
    not echoed on the "authserver.audit" logger: for management commands whose output is for a
    person or a script (`create_client --json`), where a log line on stderr after the result
    reads like an error."""
    token = _echo_muted.set(True)
    try:
        yield
    finally:
        _echo_muted.reset(token)


def _log_event(event: AuthEvent) -> None:
    """The event's log line: one line of JSON as text (control characters escaped, so one
    record per line), embedded as `data` by the JSON formatter."""
    if _echo_muted.get():
        return
    logger.info(JsonMessage(audit_log_payload(event), encoder=_Encoder))


def audit_log_payload(event: AuthEvent) -> dict[str, Any]:
    """What the event's log line says: JSON log lines embed it as `data`."""
    return {
        "audit_event_id": event.pk,
        "event": event.event_type,
        "occurred_at": event.occurred_at.isoformat(),
        "sub": str(event.user_public_id) if event.user_public_id else None,
        "client_id": event.client_id or None,
        "session_id": str(event.session_id) if event.session_id else None,
        "ip": event.ip,
        "user_agent": event.user_agent or None,
        "details": event.details,
    }


# --- Retention --------------------------------------------------------------------------------


def audit_events_purge(
    *, occurred_before: datetime, batch_size: int = 5000, dry_run: bool = False
) -> Iterator[TrailChange]:
    """Remove the events that occurred before `occurred_before`; yields each step as it is made.

    On PostgreSQL (audit/partitions.py): every week partition whose whole week is older is
    dropped (one DROP TABLE each, whatever its size), then the expired rows of the DEFAULT and
    legacy partitions are deleted in batches; a week partition straddling the cutoff is kept
    whole until its week is past. On SQLite (`make run`), the expired rows are deleted in
    batches. `batch_size` rows per statement, each its own short transaction, so a purge never
    holds one long lock; `dry_run` only reports.

    The one place that removes events from the trail. The purge itself is audited
    (audit.purged), after the removal, so its row is never removed by it.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    dropped: list[str] = []
    if audit_table_is_partitioned():
        for change in audit_partitions_drop_expired(
            occurred_before=occurred_before, dry_run=dry_run
        ):
            dropped.extend(change.tables)
            yield change
        deletion = audit_leftover_events_delete(
            occurred_before=occurred_before, batch_size=batch_size, dry_run=dry_run
        )
    else:
        deletion = _expired_rows_delete(
            occurred_before=occurred_before, batch_size=batch_size, dry_run=dry_run
        )
    yield deletion
    if (deletion.rows or dropped) and not dry_run:
        audit_event_record(
            event=EventType.AUDIT_PURGED,
            details={
                "deleted": deletion.rows,
                "partitions_dropped": dropped,
                "occurred_before": occurred_before.isoformat(),
            },
        )


def _expired_rows_delete(
    *, occurred_before: datetime, batch_size: int, dry_run: bool
) -> TrailChange:
    """An unpartitioned table (SQLite): delete the expired rows, `batch_size` at a time."""
    old = AuthEvent.objects.filter(occurred_at__lt=occurred_before).order_by()
    tables = (AuthEvent._meta.db_table,)
    if dry_run:
        return TrailChange("delete", tables, old.count(), upper=occurred_before, dry_run=True)
    deleted = 0
    while True:
        ids = list(old.values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        deleted += AuthEvent.objects.filter(pk__in=ids).delete()[0]
    return TrailChange("delete", tables, deleted, upper=occurred_before)
