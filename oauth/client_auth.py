"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

`client_authenticate` is the one implementation of the three methods, called directly by the
client_credentials grant and introspection (no authlib request object on those hot paths) and
registered with authlib for the endpoints it still drives. Compared with authlib's own methods:
a malformed Basic header is an error rather than an exception, wrong Basic credentials fail at
once instead of falling through to another method, a request may not combine Basic with a
client_secret in the body (§2.3: "MUST NOT use more than one authentication method in each
request"), and both secret methods verify a secret the same way whether or not the client
exists (`client_secret_verify`).

Failures are audited by `client_auth_failure_record`: once per client and IP in a window, then
only counted, so a flood of bad requests cannot flood the audit trail (issue 14.4).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from urllib.parse import unquote_plus

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError
from django.utils import timezone
from django.utils.crypto import salted_hmac

from accounts.throttling import ip_bucket
from audit.events import EventType
from audit.services import audit_event_record
from authserver import metrics
from authserver.conf import get_config
from authserver.counters import CacheUnavailable, window_count, window_total
from oauth.clients import client_get
from oauth.models import Client, client_secret_verify

# Client ids are at most 64 characters and secrets 43; anything much longer is not ours.
_MAX_BASIC_LENGTH = 512
_FAILURE_COUNTER = "oauth:client_auth_failed"
_FAILURE_SALT = "authserver.oauth.client_auth.failure"


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, secret) from `Authorization: Basic ...`, or None if the header is not Basic.
    Raises InvalidClientError for a Basic header that cannot be decoded."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    value = value.strip()
    if not value or len(value) > _MAX_BASIC_LENGTH:
        raise InvalidClientError(status_code=401, description="Malformed Basic credentials.")
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidClientError(
            status_code=401, description="Malformed Basic credentials."
        ) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep or not client_id or not secret:
        raise InvalidClientError(status_code=401, description="Malformed Basic credentials.")
    # §2.3.1: both parts are form-urlencoded before the Base64 step.
    return unquote_plus(client_id), unquote_plus(secret)


# Methods by name (RFC 7591 §2 token_endpoint_auth_method). Each takes the form body and the
# Authorization header and returns the client it authenticated, None when the request does not
# use that method, or raises (InvalidClientError, InvalidRequestError).


def _secret_basic(form: Mapping[str, str], authorization: str | None) -> Client | None:
    if not authorization:
        return None
    credentials = _basic_credentials(authorization)
    if credentials is None:
        return None
    client_id, secret = credentials
    if form.get("client_secret") is not None:
        raise InvalidRequestError("Use one client authentication method, not Basic and the body.")
    if form.get("client_id") not in (None, client_id):
        raise InvalidClientError(status_code=401, description="client_id does not match.")
    client = client_get(client_id=client_id)
    if not client_secret_verify(client, secret):
        raise InvalidClientError(status_code=401, description="Client authentication failed.")
    return client


def _secret_post(form: Mapping[str, str], authorization: str | None) -> Client | None:
    """client_id and client_secret in the form body (§2.3.1). authlib's own version skips the
    secret check when the client does not exist, which made an unknown client_id cheaper."""
    client_id = form.get("client_id")
    secret = form.get("client_secret")
    if not client_id or not secret:
        return None
    client = client_get(client_id=client_id)
    if not client_secret_verify(client, secret):
        raise InvalidClientError(status_code=401, description="Client authentication failed.")
    return client


def _none(form: Mapping[str, str], authorization: str | None) -> Client | None:
    """A public client names itself by client_id, with no secret (RFC 6749 §2.1); whether it may
    use this method at this endpoint is the client's `check_endpoint_auth_method`."""
    client_id = form.get("client_id")
    if not client_id or form.get("client_secret"):
        return None
    client = client_get(client_id=client_id)
    if client is None:
        raise InvalidClientError(description="The client does not exist on this server.")
    return client


_METHODS = {
    "client_secret_basic": _secret_basic,
    "client_secret_post": _secret_post,
    "none": _none,
}


def client_authenticate(
    form: Mapping[str, str], authorization: str | None, *, methods: Sequence[str], endpoint: str
) -> Client:
    """The client a back-channel request authenticates as, trying `methods` in order (as
    authlib's ClientAuthentication does): the first that recognises the request and that the
    client may use at `endpoint` wins. Raises InvalidClientError (rendered as 401 and audited
    by the endpoint) or InvalidRequestError."""
    for method in methods:
        client = _METHODS[method](form, authorization)
        if client is not None and client.check_endpoint_auth_method(method, endpoint):
            return client
    raise InvalidClientError(status_code=401, description="Client authentication failed.")


def _authlib_method(method: str):
    def authenticate(query_client, request) -> Client | None:
        return _METHODS[method](request.form, request.headers.get("Authorization"))

    authenticate.__name__ = f"authenticate_{method}"
    return authenticate


def client_auth_register(server) -> None:
    """The same methods for the endpoints authlib still drives (authorization_code and
    refresh_token grants, revocation)."""
    for method in _METHODS:
        server.register_client_auth_method(method, _authlib_method(method))


def client_id_attempted(form: Mapping[str, str], authorization: str | None) -> str:
    """The client_id a failed request named, in the body or in its Basic credentials ("" if
    none could be read). For the audit trail only: it is attacker-chosen text."""
    client_id = form.get("client_id")
    if client_id:
        return client_id
    try:
        credentials = _basic_credentials(authorization or "")
    except InvalidClientError:
        return ""
    return credentials[0] if credentials else ""


def _failure_bucket(client_id: str, ip: str | None) -> tuple[str, bool]:
    """(bucket, known): the counter bucket of a failure, and whether the client exists.

    Every unknown client_id from one IP shares one bucket, so made-up client_ids cannot mint
    new buckets (and audit rows); the bucket is a keyed digest, so its length is bounded."""
    known = client_get(client_id=client_id) is not None  # cached, unknown ids too
    source = f"{client_id if known else ''}\n{ip_bucket(ip or '')}"
    return salted_hmac(_FAILURE_SALT, source, algorithm="sha256").hexdigest()[:32], known


def client_auth_failure_record(
    *,
    client_id: str,
    ip: str | None,
    user_agent: str = "",
    endpoint: str,
    method: str,
    now: datetime | None = None,
) -> bool:
    """Audit a failed client authentication, once per (client, IP) and window.

    The first failure of a bucket in each AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS window
    writes a client.auth_failed row (and its log line); the rest of the window only count, in
    the shared counter and the authserver_client_auth_failures metric. The next window's first
    row carries the finished window's total as `previous_window_failures`. An unknown client_id
    counts in its IP's "unknown client" bucket (`_failure_bucket`). If the cache is down every
    failure is written: losing the trail is worse than a larger one. True if a row was written.
    """
    now = now or timezone.now()
    window_seconds = get_config().client_auth_audit_window_seconds
    bucket, known = _failure_bucket(client_id, ip)
    previous = 0
    try:
        counted = window_count(
            name=_FAILURE_COUNTER,
            bucket=bucket,
            window_seconds=window_seconds,
            now=now,
            keep_windows=2,  # the next window's first row reads this one's total
        )
        if counted.count == 1:
            previous = window_total(name=_FAILURE_COUNTER, bucket=bucket, index=counted.index - 1)
    except CacheUnavailable:
        counted = None
    recorded = counted is None or counted.count == 1
    metrics.client_auth_failed(recorded=recorded)
    if not recorded:
        return False
    details = {
        "endpoint": endpoint,
        "method": method,
        "known_client": known,
        "window_seconds": window_seconds,
    }
    if previous:
        details["previous_window_failures"] = previous
    if counted is None:
        details["uncounted"] = True  # the cache was down: no bucketing, every failure recorded
    audit_event_record(
        event=EventType.CLIENT_AUTH_FAILED,
        client_id=client_id[:64],
        ip=ip,
        user_agent=user_agent,
        details=details,
        occurred_at=now,
    )
    return True
