"""Structured logs: one JSON object per line, each carrying the id of the request it belongs to.

The request id comes from the `X-Request-ID` header when it is well formed (nginx, a load
balancer or the calling service sets it), otherwise it is generated; RequestIdMiddleware stores
it in a context variable for the duration of the request and echoes it in the response.
`RequestIdFilter` copies it onto every log record, so every line logged while serving a request,
by any logger, names that request. gunicorn's access log (deploy/gunicorn.conf.py) writes one
JSON line per response with the same id, taken from the response header.

Nothing here reads the environment: settings.py picks the format (AUTHSERVER_LOG_FORMAT).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from outside: UUIDs, nginx's $request_id (32 hex), cloud trace ids. Anything
# else (too long, spaces, quotes, control characters) is replaced, so a client cannot forge log
# structure or flood lines through it.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:=+/@-]{0,127}$")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "authserver_request_id", default=None
)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "request_id", "taskName"}
)


def request_id_new() -> str:
    return secrets.token_hex(16)


def request_id_from_header(value: str | None) -> str:
    """The inbound id if it is well formed, else a fresh one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return request_id_new()


def request_id_get() -> str | None:
    """The id of the request being served by this thread, or None outside a request."""
    return _request_id.get()


def request_id_set(value: str | None) -> contextvars.Token:
    return _request_id.set(value)


def request_id_reset(token: contextvars.Token) -> None:
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Put the current request id on every record (None outside a request).

    Django logs every 4xx/5xx response (`django.request`) after the whole middleware chain has
    returned, so after RequestIdMiddleware has reset the context variable; such records carry
    the request itself (`extra={"request": ...}`), whose `request_id` is used then."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = _request_id.get()
            if request_id is None:
                request_id = getattr(getattr(record, "request", None), "request_id", None)
            record.request_id = request_id
        return True


# A query string in free text: from "?" to the next whitespace. Not to the next quote: a query
# may hold quotes itself, and the closing quote of a repr()'d request line is no loss.
_QUERY_STRING = re.compile(r"\?\S*")


def query_strings_redact(text: str) -> str:
    return _QUERY_STRING.sub("?[redacted]", text)


class QueryStringRedactor(logging.Filter):
    """For gunicorn's error log, whose messages quote request lines and URIs verbatim
    ("Invalid HTTP request line: 'GET /oauth/token?client_secret=...'", "Error handling request
    GET /path?query"): the query string is replaced before any handler sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = query_strings_redact(message), ()
        return True


def _is_request(value: Any) -> bool:
    # Duck-typed: this module is imported by deploy/gunicorn.conf.py before Django is set up.
    return hasattr(value, "META") and hasattr(value, "path") and hasattr(value, "method")


def request_summary(request: Any) -> dict[str, Any]:
    """What a log line may say about a request: its method and path. Never the query string
    (str(request) is Django's repr, with the full URL: client_secret, tokens, id_token_hint),
    never headers or body."""
    return {"method": getattr(request, "method", None), "path": getattr(request, "path", None)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if _is_request(value):
        return request_summary(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonMessage:
    """A log message that is a JSON object. JsonFormatter embeds `data` in its line as is;
    every other formatter prints the object as one line of JSON text (sorted keys)."""

    __slots__ = ("data", "encoder")

    def __init__(self, data: dict[str, Any], *, encoder: type[json.JSONEncoder] | None = None):
        self.data = data
        self.encoder = encoder

    def __str__(self) -> str:
        return json.dumps(self.data, cls=self.encoder, sort_keys=True, separators=(",", ":"))


def json_log_payload(
    *, created: float, level: str, logger: str, message: str, request_id: str | None
) -> dict[str, Any]:
    """The fields every JSON log line starts with (JsonFormatter, and the access log, which
    writes its lines without a LogRecord)."""
    return {
        "time": datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
        "request_id": request_id,
    }


def json_log_dumps(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception.

    A message that is itself a JSON object (the audit trail's lines) is embedded as `data`
    instead of as an escaped string, so log pipelines can index its fields.
    """

    def format(self, record: logging.LogRecord) -> str:
        structured = record.msg if isinstance(record.msg, JsonMessage) else None
        message = record.getMessage() if structured is None else ""
        payload = json_log_payload(
            created=record.created,
            level=record.levelname,
            logger=record.name,
            message=message,
            request_id=getattr(record, "request_id", None),
        )
        if structured is not None:
            # Already a dict: embedded without the round trip through text (the audit trail).
            payload["data"] = structured.data
            payload["message"] = str(structured.data.get("event") or "json")
        elif message.startswith("{") and message.endswith("}"):
            try:
                data = json.loads(message)
            except ValueError:
                data = None
            if isinstance(data, dict):
                payload["data"] = data
                # Not twice on one line: the event name stands in for the embedded text.
                payload["message"] = str(data.get("event") or "json")
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in payload and not key.startswith("_"):
                payload[key] = _jsonable(value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json_log_dumps(payload)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development, still naming the request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "request_id", None) is None:
            record.request_id = "-"
        return super().format(record)


# --- gunicorn's access log ------------------------------------------------------------------


def _header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def access_log_fields(
    *,
    environ: Mapping[str, Any],
    status: str | int,
    response_headers: Iterable[tuple[str, str]],
    sent: int | None,
    duration_seconds: float,
) -> dict[str, Any]:
    """One access-log entry. The path only, never the query string: it can carry an
    authorization code, a state, a token or a login hint (RFC 6749 §4.1.2, §10.3)."""
    code = str(status).split(None, 1)[0]
    headers = list(response_headers)
    return {
        "request_id": _header(headers, REQUEST_ID_HEADER.lower()),
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "status": int(code) if code.isdigit() else code,
        "bytes": sent,
        "duration_ms": round(duration_seconds * 1000, 3),
        "remote_addr": environ.get("REMOTE_ADDR"),
        "forwarded_for": (environ.get("HTTP_X_FORWARDED_FOR") or "")[:256] or None,
        "user_agent": (environ.get("HTTP_USER_AGENT") or "")[:256] or None,
        "protocol": environ.get("SERVER_PROTOCOL"),
        "scheme": environ.get("wsgi.url_scheme"),
    }
