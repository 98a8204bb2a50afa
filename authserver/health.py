"""Liveness and readiness probes.

/healthz answers as long as the process can serve a request: no database, no cache.
/readyz answers 200 only when the database is reachable, every migration is applied and an
active signing key can be used, otherwise 503. Signing-key rows left out as corrupt are listed
by kid in `unusable_signing_keys` (a corrupt retired or next key does not make the instance
unready). It also reports the shared cache: when that is
down the status is "degraded" (still 200, since every instance shares the cache and sign-in
already fails closed by itself).

Who sees what: the status code is for everyone (an orchestrator needs nothing else), with a body
of {"status": "ok"|"unavailable"}. The details (each check's reason: the active kid, a KEK
mismatch, the cache state, the first pending migration) are for the callers allowed to read
/metrics (authserver.metrics.metrics_access_allowed: AUTHSERVER_METRICS_ALLOWED_IPS or the
bearer token), since they map the deployment for an attacker.

Cost: a process runs the checks at most once per READINESS_CACHE_SECONDS whoever asks, however
often (concurrent probes wait for the one check under way), and reloads the key store from the
database at most once per KEYSTORE_CHECK_SECONDS while it is sound: that reload takes the key
ring's global lock, which every token request needs too.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import http_date
from django.views.decorators.http import require_GET

from authserver.metrics import metrics_access_allowed

logger = logging.getLogger(__name__)

# The longest the readiness probe waits for the database's answer to its SELECT 1.
DATABASE_PROBE_SECONDS = 1.0
# The longest a probe waits for another probe's run of the checks; then it answers 503 rather
# than queue behind a stalled dependency.
READINESS_WAIT_SECONDS = 1.5

# Once every migration was seen applied, this process does not load the migration graph again.
_migrations_applied = False


def _pending_migrations() -> list[str]:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def database_state() -> tuple[bool, str]:
    """(ready, reason) for the default database."""
    global _migrations_applied  # noqa: PLW0603 - process-wide memo of a one-way fact
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()  # bounded by DATABASE_CONNECT_TIMEOUT
        # A database that stopped answering is reported within the probe's own deadline.
        waiting = getattr(connection, "wait_at_most", None)
        bound = waiting(DATABASE_PROBE_SECONDS) if waiting else contextlib.nullcontext()
        with bound, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not _migrations_applied:
            pending = _pending_migrations()
            if pending:
                return False, f"{len(pending)} migration(s) not applied, first: {pending[0]}"
            _migrations_applied = True
    except (DatabaseError, OSError) as exc:  # "not ready"; details go to the log only
        logger.warning("readiness: database check failed: %s", exc.__class__.__name__)
        return False, "database unreachable"
    return True, "ok"


def cache_state() -> tuple[bool, str]:
    """(ok, reason) for the shared cache: one write and one read of a short-lived key."""
    probe = secrets.token_hex(8)
    key = f"readyz:probe:{probe}"  # one key per probe: instances probing together never clash
    try:
        cache.set(key, probe, timeout=30)
        ok = cache.get(key) == probe
        cache.delete(key)
    except Exception as exc:  # noqa: BLE001 - any cache failure is "unavailable"
        logger.warning("readiness: cache check failed: %s", exc.__class__.__name__)
        return False, "unavailable (sign-in is refused until it returns; see README)"
    return (True, "ok") if ok else (False, "unavailable (a written value did not read back)")


# The headers Django's never_cache sets on a response without caching headers of its own, set
# directly: never_cache parses and rebuilds Cache-Control twice and formats the date each time,
# which was a third of /healthz's view (bench/README.md "What each cost buys").
NO_STORE = "max-age=0, no-cache, no-store, must-revalidate, private"
_expires: tuple[int, str] = (0, "")  # (second, its HTTP date)


def _http_date_now() -> str:
    global _expires  # noqa: PLW0603 - one formatted date per second, shared by the threads
    second = int(time.time())
    known = _expires
    if known[0] != second:
        known = _expires = (second, http_date(second))
    return known[1]


def not_cached(response: HttpResponse) -> HttpResponse:
    """What never_cache does to a response that sets no caching headers itself."""
    response.headers["Expires"] = _http_date_now()
    response.headers["Cache-Control"] = NO_STORE
    return response


_HEALTHY = b'{"status": "ok"}'  # JsonResponse({"status": "ok"}), encoded once


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return not_cached(HttpResponse(_HEALTHY, content_type="application/json"))


READINESS_CACHE_SECONDS = 1.0
KEYSTORE_CHECK_SECONDS = 10.0


@dataclass(frozen=True, eq=False)
class Readiness:
    """One run of the readiness checks: the HTTP status and the detailed body."""

    status_code: int
    body: dict[str, Any]
    checked_at: float


_readiness_lock = threading.Lock()
_readiness: Readiness | None = None
# (checked_at, ready, reason) of the last key store check that found the store sound.
_keystore_ok: tuple[float, bool, str] | None = None


@receiver(setting_changed)
def readiness_forget(**kwargs) -> None:
    """Forget the memoised checks (tests change the database, cache or KEK between requests)."""
    global _readiness, _keystore_ok  # noqa: PLW0603
    _readiness = None
    _keystore_ok = None


def keystore_state_recent() -> tuple[bool, str]:
    """tokens.keys.keystore_state, reused for KEYSTORE_CHECK_SECONDS while the store is sound;
    a failing store is checked again on the next run (at most once per READINESS_CACHE_SECONDS)."""
    global _keystore_ok  # noqa: PLW0603
    recent = _keystore_ok
    if recent is not None and time.monotonic() - recent[0] < KEYSTORE_CHECK_SECONDS:
        return recent[1], recent[2]
    # The first call on an empty store creates the first key.
    from tokens.keys import keystore_state

    ready, reason = keystore_state()
    _keystore_ok = (time.monotonic(), ready, reason) if ready else None
    return ready, reason


def readiness_check() -> Readiness:
    """Run every check now. `checks` maps each check to its reason; add new checks there."""
    ready, reason = database_state()
    checks = {"database": reason}
    failure = None if ready else f"database: {reason}"
    # The cache is shared by every instance, so its outage is reported but does not take this
    # instance out of the load balancer: refresh, JWKS and token verification still work;
    # sign-in fails closed (503) on its own.
    cache_ok, checks["cache"] = cache_state()
    unusable_keys: dict[str, str] = {}
    if ready:
        # Signing keys: an active key this process can decrypt, sound public keys.
        from tokens.keys import unusable_keys as keystore_unusable

        keys_ready, checks["signing_keys"] = keystore_state_recent()
        if not keys_ready:
            failure = f"signing_keys: {checks['signing_keys']}"
        # Rows left out of the JWKS and the signing keys (corrupt), by kid: the other keys keep
        # serving, so this alone does not make the instance unready.
        unusable_keys = keystore_unusable()
    status = "unavailable" if failure else ("ready" if cache_ok else "degraded")
    body: dict[str, Any] = {"status": status, "checks": checks}
    if unusable_keys:
        body["unusable_signing_keys"] = unusable_keys
    if failure:
        body["reason"] = failure
    return Readiness(503 if failure else 200, body, time.monotonic())


def readiness_get() -> Readiness:
    """The latest readiness, at most READINESS_CACHE_SECONDS old."""
    global _readiness  # noqa: PLW0603
    current = _readiness
    if current is not None and time.monotonic() - current.checked_at < READINESS_CACHE_SECONDS:
        return current
    # Concurrent probes share one run of the checks, but wait for it only so long.
    if not _readiness_lock.acquire(timeout=READINESS_WAIT_SECONDS):
        # A check that takes this long is itself the news: a dependency stopped answering.
        body = {"status": "unavailable", "checks": {}, "reason": "checks did not finish in time"}
        return Readiness(503, body, time.monotonic())
    try:
        current = _readiness
        if current is None or time.monotonic() - current.checked_at >= READINESS_CACHE_SECONDS:
            current = _readiness = readiness_check()
        return current
    finally:
        _readiness_lock.release()


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    readiness = readiness_get()
    if metrics_access_allowed(request):
        body = readiness.body
    else:
        body = {"status": "ok" if readiness.status_code == 200 else "unavailable"}
    return not_cached(JsonResponse(body, status=readiness.status_code))
