"""Request ids, structured logs, /metrics (access rule and counters), /readyz's cache report and
the database-outage fallback, in-process."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest
from django.db import OperationalError
from django.test import RequestFactory
from prometheus_client import REGISTRY

from authserver.logs import JsonFormatter, PlainFormatter, RequestIdFilter, request_id_get
from authserver.middleware import DatabaseUnavailableMiddleware
from tests.conftest import PASSWORD

HEX_ID = re.compile(r"^[0-9a-f]{32}$")
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- request ids -------------------------------------------------------------------------------


def test_well_formed_request_id_is_propagated(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="9f1c2d3e-aaaa-4bbb-8ccc-0123456789ab")
    assert response["X-Request-ID"] == "9f1c2d3e-aaaa-4bbb-8ccc-0123456789ab"
    assert request_id_get() is None  # not left behind for the next request on this thread


@pytest.mark.parametrize(
    "inbound",
    ["", "has spaces", "x" * 129, 'quote"inside', "line\nbreak", "-leading-dash", "ünïcode"],
)
def test_malformed_or_missing_request_id_is_replaced(client, inbound):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=inbound)
    assert HEX_ID.match(response["X-Request-ID"])
    assert response["X-Request-ID"] != inbound


def test_every_request_gets_a_fresh_id(client):
    ids = {client.get("/healthz")["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


@pytest.fixture
def captured_log():
    """JSON lines of authserver.* loggers, through the filter and formatter settings.py uses."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("authserver")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_log_lines_carry_the_request_id(client, make_user, captured_log):
    make_user(username="alice")
    response = client.post(
        LOGIN,
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
        HTTP_X_REQUEST_ID="req-42",
    )
    assert response.status_code == 200
    audit = [line for line in captured_log() if line["logger"] == "authserver.audit"]
    assert audit, "the login wrote no audit line"
    assert {line["request_id"] for line in audit} == {"req-42"}
    events = [line["data"]["event"] for line in audit]  # the audit JSON, as fields
    assert "login.succeeded" in events
    assert PASSWORD not in json.dumps(captured_log())


def test_json_formatter_keeps_one_record_per_line():
    formatter = JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    record.__dict__["http"] = {"status": 500}
    line = formatter.format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["message"] == "failed here"
    assert payload["http"] == {"status": 500}
    assert "ValueError: boom" in payload["exception"]
    assert payload["request_id"] is None


def test_plain_formatter_names_the_request_or_a_dash():
    record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "hi", (), None)
    RequestIdFilter().filter(record)
    assert "[-] hi" in PlainFormatter().format(record)


# --- /metrics access -------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_answer_allowed_addresses_in_prometheus_format(client):
    response = client.get("/metrics")  # the test client connects from 127.0.0.1
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    body = response.content.decode()
    assert "# TYPE authserver_tokens_issued_total counter" in body
    assert "authserver_signing_key_ready" in body
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_metrics_refuse_other_addresses(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.5").status_code == 403


@pytest.mark.django_db
def test_metrics_behind_a_trusted_proxy_use_the_real_client_address(client, settings):
    """The proxy's own address is allowed, but an outside client reaching /metrics through it
    is not: the rule applies to the client address, not to the TCP peer."""
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1"]
    outside = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert outside.status_code == 403
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_metrics_bearer_token(client, settings):
    settings.AUTHSERVER_METRICS_TOKEN = "s" * 40
    settings.AUTHSERVER_METRICS_ALLOWED_IPS = []
    far = {"REMOTE_ADDR": "198.51.100.9"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "s" * 40, **far).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "s" * 39, **far).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic " + "s" * 40, **far).status_code == 403
    assert client.get("/metrics", **far).status_code == 403


@pytest.mark.django_db
def test_metrics_are_off_without_allowed_addresses_or_token(client, settings):
    settings.AUTHSERVER_METRICS_ALLOWED_IPS = []
    settings.AUTHSERVER_METRICS_TOKEN = None
    assert client.get("/metrics").status_code == 404


@pytest.mark.django_db
def test_probes_answer_any_host_but_pages_do_not(client, settings):
    """Orchestrators probe by pod address; that Host is not in ALLOWED_HOSTS."""
    settings.SECURE_SSL_REDIRECT = True
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path, HTTP_HOST="10.1.2.3:8000").status_code == 200, path
    assert client.get("/api/v1/me", HTTP_HOST="10.1.2.3:8000").status_code == 400


# --- counters ----------------------------------------------------------------------------------


def test_token_counters_follow_login_refresh_and_reuse(
    client, make_user, django_capture_on_commit_callbacks
):
    make_user(username="alice")
    before = {
        "session": sample("authserver_tokens_issued_total", flow="session"),
        "refresh": sample("authserver_tokens_issued_total", flow="refresh"),
        "reuse": sample("authserver_refresh_reuse_detected_total", replayed="last_spent"),
        "theft": sample("authserver_refresh_reuse_detected_total", replayed="earlier"),
        "succeeded": sample("authserver_logins_total", outcome="succeeded"),
        "duration": sample("authserver_token_issue_duration_seconds_count", flow="refresh"),
    }
    with django_capture_on_commit_callbacks(execute=True):
        pair = client.post(
            LOGIN, {"username": "alice", "password": PASSWORD}, content_type="application/json"
        ).json()
        rotated = client.post(
            REFRESH, {"refresh_token": pair["refresh_token"]}, content_type="application/json"
        )
        assert rotated.status_code == 200
        replay = client.post(
            REFRESH, {"refresh_token": pair["refresh_token"]}, content_type="application/json"
        )
        assert replay.status_code == 401
    assert sample("authserver_tokens_issued_total", flow="session") == before["session"] + 1
    assert sample("authserver_tokens_issued_total", flow="refresh") == before["refresh"] + 1
    assert (
        sample("authserver_token_issue_duration_seconds_count", flow="refresh")
        == before["duration"] + 1
    )
    # The just-spent token again while its successor is unused: a lost response, not theft.
    assert (
        sample("authserver_refresh_reuse_detected_total", replayed="last_spent")
        == before["reuse"] + 1
    )
    assert sample("authserver_refresh_reuse_detected_total", replayed="earlier") == before["theft"]
    assert sample("authserver_logins_total", outcome="succeeded") == before["succeeded"] + 1


def test_reuse_of_a_token_whose_successor_was_used_is_labelled_earlier(
    client, make_user, django_capture_on_commit_callbacks
):
    """The alert pages on replayed="earlier" only: an older token presented after its successor
    was used (likely theft), as the audit row's `replayed` detail says."""
    make_user(username="carol")
    before = {
        replayed: sample("authserver_refresh_reuse_detected_total", replayed=replayed)
        for replayed in ("last_spent", "earlier")
    }
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(
            LOGIN, {"username": "carol", "password": PASSWORD}, content_type="application/json"
        ).json()["refresh_token"]
        second = client.post(
            REFRESH, {"refresh_token": first}, content_type="application/json"
        ).json()["refresh_token"]
        third = client.post(REFRESH, {"refresh_token": second}, content_type="application/json")
        assert third.status_code == 200
        replay = client.post(REFRESH, {"refresh_token": first}, content_type="application/json")
        assert replay.status_code == 401
    assert (
        sample("authserver_refresh_reuse_detected_total", replayed="earlier")
        == before["earlier"] + 1
    )
    assert (
        sample("authserver_refresh_reuse_detected_total", replayed="last_spent")
        == before["last_spent"]
    )
    from audit.models import AuthEvent

    row = AuthEvent.objects.filter(event_type="token.reuse_detected").order_by("-id").first()
    assert row.details["replayed"] == "earlier"


def test_refresh_failures_are_counted_by_reason(client, db):
    before = sample("authserver_refresh_failures_total", reason="unknown")
    response = client.post(REFRESH, {"refresh_token": "A" * 43}, content_type="application/json")
    assert response.status_code == 401
    assert sample("authserver_refresh_failures_total", reason="unknown") == before + 1


def test_lockouts_and_failed_logins_are_counted(client, make_user, settings):
    settings.AUTHSERVER_LOCKOUT_THRESHOLD = 2
    make_user(username="bob")
    lockouts = sample("authserver_account_lockouts_total")
    bad = sample("authserver_login_failures_total", reason="bad_credentials")
    locked = sample("authserver_login_failures_total", reason="locked")
    for password in ("wrong one!", "wrong two!", PASSWORD):
        response = client.post(
            LOGIN, {"username": "bob", "password": password}, content_type="application/json"
        )
        assert response.status_code == 401
    assert sample("authserver_account_lockouts_total") == lockouts + 1
    assert sample("authserver_login_failures_total", reason="bad_credentials") == bad + 2
    assert sample("authserver_login_failures_total", reason="locked") == locked + 1


def test_request_latency_is_labelled_by_route_never_by_raw_path(client, db):
    before = sample("authserver_http_request_duration_seconds_count", **_labels("healthz", 200))
    unmatched = sample(
        "authserver_http_request_duration_seconds_count", **_labels("unmatched", 404)
    )
    client.get("/healthz")
    client.get("/no/such/page/8c1e2f")
    assert (
        sample("authserver_http_request_duration_seconds_count", **_labels("healthz", 200))
        == before + 1
    )
    assert (
        sample("authserver_http_request_duration_seconds_count", **_labels("unmatched", 404))
        == unmatched + 1
    )
    assert "8c1e2f" not in client.get("/metrics").content.decode()


def _labels(route: str, status: int) -> dict[str, str]:
    return {"route": route, "method": "GET", "status": str(status)}


@pytest.mark.django_db
def test_active_key_age_gauge(client):
    assert client.get("/readyz").status_code == 200  # creates the first key
    body = client.get("/metrics").content.decode()
    assert "authserver_signing_key_ready 1.0" in body
    age = re.search(r"^authserver_signing_key_active_age_seconds (\S+)$", body, re.M)
    assert age and 0 <= float(age.group(1)) < 60
    assert "authserver_signing_keys_published 1.0" in body


# --- /readyz and outages ---------------------------------------------------------------------

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}


@pytest.mark.django_db
def test_readyz_reports_the_cache(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["checks"]["cache"] == "ok"


def test_readyz_with_the_cache_down_is_degraded_and_login_fails_closed(client, make_user, settings):
    make_user(username="carol")
    settings.CACHES = DEAD_REDIS
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["cache"].startswith("unavailable")
    unavailable = sample("authserver_logins_total", outcome="unavailable")
    login = client.post(
        LOGIN, {"username": "carol", "password": PASSWORD}, content_type="application/json"
    )
    assert login.status_code == 503
    assert login.json()["error"] == "temporarily_unavailable"
    assert sample("authserver_logins_total", outcome="unavailable") == unavailable + 1


def test_database_outage_in_a_plain_view_is_503_not_500():
    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    factory = RequestFactory()
    api = middleware.process_exception(factory.get("/oauth/token"), OperationalError("down"))
    assert api.status_code == 503
    assert json.loads(api.content)["error"] == "temporarily_unavailable"
    assert api["Retry-After"] == "5"
    page = middleware.process_exception(
        factory.get("/login", HTTP_ACCEPT="text/html"), OperationalError("down")
    )
    assert page.status_code == 503 and page["Content-Type"].startswith("text/html")
    assert middleware.process_exception(factory.get("/"), ValueError("bug")) is None
