"""Failed client authentication: a bounded audit trail with a retention purge (issue 14.4), and
no cheaper path for an unknown client_id than for a wrong secret (issue 14.10).

The flood test drives real gunicorn workers on PostgreSQL; the rest call the services directly.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests
from django.core.cache import cache, caches
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuthEvent
from audit.services import audit_event_record
from oauth import clients as clients_module
from oauth import models as oauth_models
from oauth.client_auth import client_auth_failure_record
from oauth.clients import client_cache_clear_local, client_create, client_get, client_register
from oauth.models import Client
from tests.accounts.conftest import T0
from tests.live import Gunicorn, base_env, free_port, manage, window_with_room
from tests.oauth.conftest import form_post

pytestmark = pytest.mark.django_db

FAILED = "client.auth_failed"
WINDOW = 300


@pytest.fixture(autouse=True)
def _fresh_client_cache(settings):
    settings.AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS = WINDOW
    client_cache_clear_local()
    yield
    client_cache_clear_local()


def machine_client() -> tuple[Client, str]:
    created = client_create(
        name="Machine",
        client_type="confidential",
        grant_types=["client_credentials"],
        scopes=["reports:read"],
    )
    return created.client, created.secret


def fail(client_id: str, *, ip: str = "198.51.100.7", now=T0) -> bool:
    return client_auth_failure_record(
        client_id=client_id, ip=ip, endpoint="/oauth/token", method="basic", now=now
    )


def failed_rows():
    return AuthEvent.objects.filter(event_type=FAILED).order_by("occurred_at", "id")


# --- 14.4: bounded audit writes -------------------------------------------------------------


@pytest.fixture
def server(child_env, tmp_path) -> Iterator[Gunicorn]:
    env = {
        **child_env,
        # One window for the whole test, so the bound below is exact.
        "AUTHSERVER_CLIENT_AUTH_AUDIT_WINDOW_SECONDS": "86400",
        "AUTHSERVER_METRICS_DIR": str(tmp_path / "metrics"),
    }
    window_with_room(86400, 300)  # a boundary (midnight UTC) only near the end of a day
    with Gunicorn(env, workers=2) as running:
        yield running


def _metric(text: str, audit: str) -> float:
    pattern = rf'^authserver_client_auth_failures_total\{{audit="{audit}"\}} (\S+)$'
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_flood_of_bad_client_authentication_writes_a_bounded_number_of_rows(server):
    """Issue 14.4: 300 failed client authentications (wrong secrets, made-up client_ids, at the
    token, introspection and revocation endpoints) write one audit row per (client, IP) and
    window, not one per request; every failure is still counted in /metrics."""
    machine, _ = machine_client()
    http = requests.Session()
    statuses = []
    for n in range(300):
        kind = n % 4
        if kind == 0:  # a wrong secret for a real client, Basic
            response = http.post(
                server.url + "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(machine.client_id, "wrong-" + str(n)),
                timeout=10,
            )
        elif kind == 1:  # a different made-up client_id every time, in the body
            response = http.post(
                server.url + "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": f"made-up-{n}-" + secrets.token_hex(8),
                    "client_secret": "x" * 43,
                },
                timeout=10,
            )
        else:  # introspection and revocation, wrong secret
            path = "/oauth/introspect" if kind == 2 else "/oauth/revoke"
            response = http.post(
                server.url + path,
                data={"token": "whatever"},
                auth=(machine.client_id, "wrong"),
                timeout=10,
            )
        statuses.append(response.status_code)
    assert set(statuses) == {401}

    rows = list(failed_rows())
    # Two buckets from this address: the real client, and "some unknown client".
    assert len(rows) == 2, [(r.client_id, r.details) for r in rows]
    assert {row.details["known_client"] for row in rows} == {True, False}
    known = next(row for row in rows if row.details["known_client"])
    assert known.client_id == machine.client_id
    assert known.ip == "127.0.0.1"

    # One log line per audited event, and no warning per refused request.
    output = server.output()
    assert output.count('"event":"client.auth_failed"') == 2, output[-3000:]
    assert "Unauthorized: /oauth" not in output

    scrape = requests.get(server.url + "/metrics", timeout=10).text
    assert _metric(scrape, "recorded") == 2
    assert _metric(scrape, "counted") == 298


def test_first_failure_per_window_is_recorded_and_the_next_window_carries_the_count():
    """Issue 14.4: the first failure of a (client, IP) in a window writes a row; the rest of the
    window are counted, and the next window's first row records how many there were."""
    machine, _ = machine_client()
    results = [fail(machine.client_id, now=T0 + timedelta(seconds=n)) for n in range(7)]
    assert results == [True] + [False] * 6
    assert failed_rows().count() == 1
    first = failed_rows().get()
    assert "previous_window_failures" not in first.details
    assert first.details["window_seconds"] == WINDOW

    assert fail(machine.client_id, now=T0 + timedelta(seconds=WINDOW))
    second = failed_rows().last()
    assert second.details["previous_window_failures"] == 7
    assert second.occurred_at == T0 + timedelta(seconds=WINDOW)
    # Another address is another bucket.
    assert fail(machine.client_id, ip="203.0.113.9", now=T0 + timedelta(seconds=WINDOW))
    assert failed_rows().count() == 3


def test_made_up_client_ids_cannot_mint_buckets_or_long_keys():
    """Issue 14.4: attacker-chosen client_ids share their IP's "unknown client" bucket (one row
    per window however many ids are tried), and no cache key carries the raw text."""
    long_id = "A" * 5000
    ids = [long_id] + [f"guess-{n}" for n in range(40)]
    results = [fail(client_id) for client_id in ids]
    assert results == [True] + [False] * 40
    row = failed_rows().get()
    assert row.client_id == "A" * 64
    assert row.details["known_client"] is False

    redis = caches["default"]._cache.get_client()
    prefix = caches["default"].key_prefix
    keys = [key.decode() for key in redis.scan_iter(match=f"{prefix}*oauth:client_auth_failed*")]
    assert len(keys) == 1
    assert len(keys[0]) < 200 and "guess" not in keys[0] and "AAAA" not in keys[0]


def test_every_failure_is_recorded_when_the_cache_is_down(dead_cache):
    """Issue 14.4: without the shared counter a failure cannot be bucketed; it is written rather
    than lost (and the request still gets its 401 elsewhere)."""
    for _ in range(3):
        assert fail("unknown-client")
    assert failed_rows().count() == 3
    assert all(row.details["uncounted"] for row in failed_rows())


@pytest.fixture
def dead_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


# --- 14.4: retention purge ------------------------------------------------------------------


def purge(*args: str) -> str:
    out = io.StringIO()
    call_command("purge_audit_events", *args, stdout=out)
    return out.getvalue()


def test_purge_deletes_events_past_the_retention_in_batches(settings):
    """Issue 14.4: purge_audit_events deletes events older than AUTHSERVER_AUDIT_RETENTION_DAYS
    (on PostgreSQL, in batches); --dry-run only counts; the purge is itself audited."""
    settings.AUTHSERVER_AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    for days in (400, 200, 31, 31, 31):
        audit_event_record(event="login.failed", occurred_at=now - timedelta(days=days))
    kept = [
        audit_event_record(event="login.failed", occurred_at=now - timedelta(days=days))
        for days in (29, 1)
    ]
    assert connection.vendor == "postgresql"

    assert "would delete 5 audit event(s)" in purge("--dry-run")
    assert AuthEvent.objects.count() == 7
    assert "deleted 5 audit event(s)" in purge("--batch-size", "2")
    remaining = AuthEvent.objects.exclude(event_type="audit.purged")
    assert set(remaining.values_list("pk", flat=True)) == {row.pk for row in kept}
    purged = AuthEvent.objects.get(event_type="audit.purged")
    assert purged.details["deleted"] == 5
    # --retention-days overrides the setting; nothing left to do is not an event.
    assert "deleted 1 audit event(s)" in purge("--retention-days", "2")
    assert "deleted 0 audit event(s)" in purge()
    assert AuthEvent.objects.filter(event_type="audit.purged").count() == 2


@pytest.mark.parametrize("args", [("--retention-days", "0"), ("--batch-size", "0")])
def test_purge_refuses_nonsense_arguments(args):
    with pytest.raises(CommandError):
        purge(*args)


@pytest.mark.parametrize("value", ["0", "ten", "36501"])
def test_retention_setting_is_validated(value):
    """Issue 14.4: AUTHSERVER_AUDIT_RETENTION_DAYS must be 1 to 36500; anything else stops the
    start with one line naming the variable."""
    result = manage("check", env=base_env(AUTHSERVER_AUDIT_RETENTION_DAYS=value))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AUTHSERVER_AUDIT_RETENTION_DAYS" in lines[0], result.stderr


# --- 14.10: an unknown client_id costs what a wrong secret costs ----------------------------


def test_repeated_unknown_client_id_lookups_do_not_query_the_database():
    """Issue 14.10: "no such client" is cached like a client record, so asking again for an
    unknown client_id is served without a query, in this process and in any other."""
    with CaptureQueriesContext(connection) as queries:
        for _ in range(20):
            assert client_get(client_id="no-such-client") is None
    assert len(queries) == 1
    client_cache_clear_local()  # another worker: the shared cache answers
    with CaptureQueriesContext(connection) as queries:
        assert client_get(client_id="no-such-client") is None
    assert len(queries) == 0


def _chosen_client(client_id: str) -> Client:
    return Client(
        client_id=client_id,
        name="Chosen",
        client_type="confidential",
        grant_types="client_credentials",
        scopes="reports:read",
    )


def test_a_client_created_after_a_negative_lookup_is_visible_at_once():
    """Issue 14.10: creating a client drops the cached "no such client" for its id."""
    assert client_get(client_id="chosen-id") is None
    client_register(client=_chosen_client("chosen-id"))
    assert client_get(client_id="chosen-id").name == "Chosen"


def test_another_processes_creation_is_seen_within_a_second(monkeypatch):
    """Issue 14.10: a worker that cached "no such client" sees a creation made elsewhere as
    soon as it next compares the shared generation (at most a second), not after the TTL."""
    now = [1000.0]
    monkeypatch.setattr(clients_module, "clock", lambda: now[0])
    assert client_get(client_id="elsewhere") is None
    # Another worker registers it: the row appears, its shared entry is dropped, the generation
    # moves on (what client_register's invalidation does there).
    _chosen_client("elsewhere").save()
    cache.delete(clients_module._CACHE_KEY.format("elsewhere"))
    cache.set("oauth:clients:generation", "changed-elsewhere", None)
    now[0] += 1.1
    assert client_get(client_id="elsewhere") is not None


@pytest.fixture
def digests(monkeypatch) -> list[str]:
    """Records each secret digest computed (the real one is still computed and used)."""
    seen: list[str] = []
    real = oauth_models.secret_digest

    def spy(value: str) -> str:
        seen.append(value)
        return real(value)

    monkeypatch.setattr(oauth_models, "secret_digest", spy)
    return seen


@pytest.mark.parametrize("how", ["basic", "post"])
def test_unknown_client_and_wrong_secret_do_the_same_work(digests, how):
    """Issue 14.10: an unknown client_id goes through the same secret hash and comparison as a
    wrong secret, and once the lookup is cached neither costs a database query."""
    machine, _ = machine_client()
    http = HttpClient()

    def attempt(client_id: str):
        data = {"grant_type": "client_credentials"}
        header = None
        if how == "basic":
            raw = f"{client_id}:{'w' * 43}".encode()
            header = "Basic " + base64.b64encode(raw).decode()
        else:
            data.update(client_id=client_id, client_secret="w" * 43)
        response = form_post(http, "/oauth/token", data, header)
        assert response.status_code == 401
        return response

    for client_id in (machine.client_id, "unknown-client-id"):
        attempt(client_id)  # first: fills the caches, writes the window's audit row
        digests.clear()
        with CaptureQueriesContext(connection) as queries:
            attempt(client_id)
        assert digests == ["w" * 43], client_id
        assert len(queries) == 0, (client_id, [q["sql"] for q in queries])
