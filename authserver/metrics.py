"""Prometheus metrics, served at GET /metrics to the allowed scrapers only.

Counters and histograms are prometheus-client objects, incremented by small calls from the
services where the events happen (sessions/services.py, accounts/services.py, oauth/client_auth.py)
and by RequestMetricsMiddleware. Under gunicorn every worker is a process of its own:
deploy/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR (from AUTHSERVER_METRICS_DIR) before the
app is imported, each worker writes its values to memory-mapped files there, and /metrics sums
every worker's files, so one scrape sees the whole instance whichever worker answers it.
Signing-key gauges are computed at scrape time from this process's key ring, which every worker
keeps in step with the database.

Access (README "Metrics"): a client whose address (accounts.network.client_ip, the same proxy
policy as the rate limiter) is in AUTHSERVER_METRICS_ALLOWED_IPS, or one presenting
`Authorization: Bearer <AUTHSERVER_METRICS_TOKEN>`. With neither configured /metrics is off (404).
Label values are bounded sets (route names, status codes, reasons), never user input.

Recording a metric never fails a request: an error is logged once and the event goes uncounted.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Iterator
from functools import lru_cache

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from accounts.network import client_ip
from authserver.conf import get_config

logger = logging.getLogger(__name__)

# Seconds. Token requests are a few milliseconds of signing plus database round trips; a login
# includes an Argon2id hash (~0.1-0.5 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUEST_DURATION = Histogram(
    "authserver_http_request_duration_seconds",
    "Time from the first middleware to the response, by route name, method and status.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
TOKENS_ISSUED = Counter(
    "authserver_tokens_issued",
    "Token sets issued: flow=session (sign-in, any grant) or refresh (rotation).",
    ["flow"],
)
TOKEN_ISSUE_DURATION = Histogram(
    "authserver_token_issue_duration_seconds",
    "Time to start a session or rotate a refresh token, database transaction included.",
    ["flow"],
    buckets=LATENCY_BUCKETS,
)
REFRESH_FAILURES = Counter(
    "authserver_refresh_failures",
    "Refresh-token presentations refused, by reason.",
    ["reason"],
)
REFRESH_REUSE_DETECTED = Counter(
    "authserver_refresh_reuse_detected",
    "Spent refresh tokens presented again (the whole session was revoked), by what was "
    "replayed: last_spent = the token spent by the last rotation while its successor was still "
    "unused (most likely a lost response: a crash, a deploy, a flaky network); earlier = an "
    "older token, or one presented after its successor was used (most likely theft: page on it).",
    ["replayed"],
)
LOGINS = Counter(
    "authserver_logins",
    "Password sign-in attempts by outcome (succeeded, failed, throttled, unavailable, busy).",
    ["outcome"],
)
LOGIN_FAILURES = Counter(
    "authserver_login_failures",
    "Failed sign-ins by reason (bad_credentials, unknown_user, inactive, locked).",
    ["reason"],
)
ACCOUNT_LOCKOUTS = Counter(
    "authserver_account_lockouts",
    "Account lockouts started after consecutive wrong passwords.",
)
CLIENT_AUTH_FAILURES = Counter(
    "authserver_client_auth_failures",
    "Failed OAuth client authentications (token, revocation, introspection). audit=recorded: "
    "the first per client and IP in a window, written to the audit trail; audit=counted: the "
    "rest of that window, counted here only.",
    ["audit"],
)

REFRESH_FAILURE_REASONS = frozenset(
    {
        "malformed",
        "unknown",
        "client_mismatch",
        "session_revoked",
        "concurrent_use",
        "reuse_detected",
        "expired",
        "user_inactive",
        "password_changed",
    }
)
LOGIN_OUTCOMES = frozenset({"succeeded", "failed", "throttled", "unavailable", "busy"})
REUSE_REPLAYED = frozenset({"last_spent", "earlier"})
LOGIN_FAILURE_REASONS = frozenset({"bad_credentials", "unknown_user", "inactive", "locked"})

# Known label values start at zero, so dashboards and rate() see a series before the first event.
for _flow in ("session", "refresh"):
    TOKENS_ISSUED.labels(_flow)
for _outcome in LOGIN_OUTCOMES:
    LOGINS.labels(_outcome)
REFRESH_FAILURES.labels("reuse_detected")
for _replayed in REUSE_REPLAYED:
    REFRESH_REUSE_DETECTED.labels(_replayed)
for _audit in ("recorded", "counted"):
    CLIENT_AUTH_FAILURES.labels(_audit)

_failed_once: set[str] = set()


def _record_failed(what: str, exc: Exception) -> None:
    if what not in _failed_once:
        _failed_once.add(what)
        logger.error("metrics: cannot record %s (%s)", what, exc.__class__.__name__)


# The counter's and the histogram's child per flow, kept as http_request_observed keeps its
# own (below): two labels() calls were a lock and a lookup each on every refresh.
_issued_children: dict[str, tuple[Counter, Histogram]] = {}


def token_issued(*, flow: str, seconds: float) -> None:
    """A session started (flow="session") or a refresh token rotated (flow="refresh")."""
    try:
        children = _issued_children.get(flow)
        if children is None:
            children = _issued_children[flow] = (
                TOKENS_ISSUED.labels(flow),
                TOKEN_ISSUE_DURATION.labels(flow),
            )
        children[0].inc()
        children[1].observe(seconds)
    except Exception as exc:  # noqa: BLE001 - metrics never fail a request
        _record_failed("token_issued", exc)


def refresh_failed(*, reason: str, replayed: str | None = None) -> None:
    """A refresh token refused. For reuse, `replayed` is the audit detail of the same name
    ("last_spent" or "earlier"; sessions/services.py)."""
    try:
        REFRESH_FAILURES.labels(reason if reason in REFRESH_FAILURE_REASONS else "other").inc()
        if reason == "reuse_detected":
            REFRESH_REUSE_DETECTED.labels(
                replayed if replayed in REUSE_REPLAYED else "earlier"
            ).inc()
    except Exception as exc:  # noqa: BLE001
        _record_failed("refresh_failed", exc)


def login_attempted(*, outcome: str, reason: str | None = None) -> None:
    try:
        LOGINS.labels(outcome if outcome in LOGIN_OUTCOMES else "other").inc()
        if reason is not None:
            LOGIN_FAILURES.labels(reason if reason in LOGIN_FAILURE_REASONS else "other").inc()
    except Exception as exc:  # noqa: BLE001
        _record_failed("login_attempted", exc)


def lockout_started() -> None:
    try:
        ACCOUNT_LOCKOUTS.inc()
    except Exception as exc:  # noqa: BLE001
        _record_failed("lockout_started", exc)


def client_auth_failed(*, recorded: bool) -> None:
    try:
        CLIENT_AUTH_FAILURES.labels("recorded" if recorded else "counted").inc()
    except Exception as exc:  # noqa: BLE001
        _record_failed("client_auth_failed", exc)


# The histogram's child per (route, method, status): `labels()` converts the values, takes a
# lock and looks the child up on every call, a third of this middleware's cost. The keys are
# bounded sets (route names, methods, status codes), and prometheus-client keeps every child it
# made for good, so these are the same objects it holds.
_request_durations: dict[tuple[str, str, int], Histogram] = {}


def http_request_observed(*, route: str, method: str, status: int, seconds: float) -> None:
    try:
        key = (route, method, status)
        child = _request_durations.get(key)
        if child is None:
            child = _request_durations[key] = HTTP_REQUEST_DURATION.labels(
                route, method, str(status)
            )
        child.observe(seconds)
    except Exception as exc:  # noqa: BLE001
        _record_failed("http_request", exc)


# --- Scrape-time gauges ---------------------------------------------------------------------


class SigningKeyCollector:
    """Gauges from this process's key ring: whether it can sign, the active key's age, and how
    many keys the JWKS publishes. The ring is shared by every worker through the database."""

    def collect(self) -> Iterator[Metric]:
        from tokens.keys import keyring

        ready = GaugeMetricFamily(
            "authserver_signing_key_ready",
            "1 when this process has an active signing key it can use, else 0.",
        )
        age = GaugeMetricFamily(
            "authserver_signing_key_active_age_seconds",
            "Seconds since the active signing key started signing (rotation is due at "
            "AUTHSERVER_KEY_ROTATION_DAYS).",
        )
        published = GaugeMetricFamily(
            "authserver_signing_keys_published", "Keys in the JWKS (next, active, retired)."
        )
        try:
            ring = keyring()
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer
            _record_failed("signing_key_gauges", exc)
            ring = None
        active = ring.active if ring is not None else None
        ready.add_metric([], 1.0 if active is not None else 0.0)
        yield ready
        if ring is not None and not ring.error:
            published.add_metric([], float(len(ring.keys)))
            yield published
        if active is not None:
            activated_at = ring.keys[active.kid].activated_at if active.kid in ring.keys else None
            if activated_at is not None:
                age.add_metric([], max(0.0, (timezone.now() - activated_at).total_seconds()))
                yield age


class OutboxCollector:
    """Gauges of the email outbox (mail/), one indexed query per scrape: how many messages wait,
    how many of them have failed at least once, and the age of the oldest. A growing age means
    the worker is down or the SMTP server refuses (README "Email and password reset")."""

    def collect(self) -> Iterator[Metric]:
        from django.db.models import Count, Min, Q

        from mail.models import Outbox

        try:
            row = Outbox.objects.filter(status=Outbox.Status.PENDING).aggregate(
                pending=Count("id"),
                failing=Count("id", filter=Q(attempts__gt=0)),
                oldest=Min("created_at"),
            )
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer
            _record_failed("outbox_gauges", exc)
            return
        pending = GaugeMetricFamily(
            "authserver_mail_outbox_pending", "Email messages queued and not yet delivered."
        )
        pending.add_metric([], float(row["pending"]))
        yield pending
        failing = GaugeMetricFamily(
            "authserver_mail_outbox_failing",
            "Queued messages whose delivery failed at least once (being retried).",
        )
        failing.add_metric([], float(row["failing"]))
        yield failing
        oldest = GaugeMetricFamily(
            "authserver_mail_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered message (0 when none waits).",
        )
        age = (timezone.now() - row["oldest"]).total_seconds() if row["oldest"] else 0.0
        oldest.add_metric([], max(0.0, age))
        yield oldest


def metrics_exposition() -> bytes:
    """Every metric in the Prometheus text format: all workers' values, then the key gauges."""
    if getattr(values.ValueClass, "_multiprocess", False):
        # Under gunicorn: PROMETHEUS_MULTIPROC_DIR was set before prometheus-client was imported.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    keys = CollectorRegistry(auto_describe=False)
    keys.register(SigningKeyCollector())
    keys.register(OutboxCollector())
    return generate_latest(registry) + generate_latest(keys)


# --- Access ---------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def metrics_access_allowed(request: HttpRequest) -> bool | None:
    """True if the caller may scrape; False if not; None if /metrics is switched off."""
    config = get_config()
    if not config.metrics_allowed_ips and not config.metrics_token:
        return None
    if config.metrics_token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(
            presented.strip().encode(), config.metrics_token.encode()
        ):
            return True
    if config.metrics_allowed_ips:
        try:
            address = ipaddress.ip_address(client_ip(request))
        except ValueError:
            return False
        return any(
            address.version == net.version and address in net
            for net in _networks(config.metrics_allowed_ips)
        )
    return False


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    allowed = metrics_access_allowed(request)
    if allowed is None:
        return JsonResponse(
            {"error": "not_found", "error_description": "Metrics are not enabled."}, status=404
        )
    if not allowed:
        return JsonResponse(
            {
                "error": "access_denied",
                "error_description": "Metrics are restricted to AUTHSERVER_METRICS_ALLOWED_IPS "
                "and AUTHSERVER_METRICS_TOKEN.",
            },
            status=403,
        )
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
