"""Recording security events: one database row and one JSON log line per event."""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from accounts.network import client_ip
from audit.events import EventType
from audit.models import CLIENT_ID_MAX_LENGTH, USER_AGENT_MAX_LENGTH, AuthEvent

logger = logging.getLogger("authserver.audit")
_internal_logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
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
    if event not in EventType.values:
        raise ValueError(f"unknown audit event type {event!r}; add it to audit.events.EventType")
    if request is not None:
        if ip is None:
            ip = client_ip(request)
        if user_agent is None:
            user_agent = request.META.get("HTTP_USER_AGENT", "")
    if session_id is not None and not isinstance(session_id, uuid.UUID):
        session_id = uuid.UUID(str(session_id))
    user_pk = getattr(user, "pk", None)
    event_row = AuthEvent.objects.create(
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
    logger.info(audit_log_line(event_row))
    return event_row


def audit_log_line(event: AuthEvent) -> str:
    """The event as one line of JSON (control characters escaped, so one record per line)."""
    payload = {
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
    return json.dumps(payload, cls=_Encoder, sort_keys=True, separators=(",", ":"))
