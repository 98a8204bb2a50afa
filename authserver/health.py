"""Liveness and readiness probes.

/healthz answers as long as the process can serve a request: no database, no cache.
/readyz answers 200 only when the database is reachable, every migration is applied and an
active signing key can be used, otherwise 503 with a JSON reason a load balancer or an operator
can read; signing-key rows left out as corrupt are listed by kid in `unusable_signing_keys`
(a corrupt retired or next key does not make the instance unready). It also reports the shared
cache: when that is down the status is "degraded" (still 200, since every instance shares the
cache and sign-in already fails closed by itself).
"""

from __future__ import annotations

import logging
import secrets

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

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
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
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


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    ready, reason = database_state()
    checks = {"database": reason}
    failure = None if ready else f"database: {reason}"
    # The cache is shared by every instance, so its outage is reported but does not take this
    # instance out of the load balancer: refresh, JWKS and token verification still work;
    # sign-in fails closed (503) on its own.
    cache_ok, checks["cache"] = cache_state()
    unusable_keys: dict[str, str] = {}
    if ready:
        # Signing keys: an active key this process can decrypt, sound public keys. The first
        # call on an empty store creates the first key.
        from tokens.keys import keystore_state
        from tokens.keys import unusable_keys as keystore_unusable

        keys_ready, checks["signing_keys"] = keystore_state()
        if not keys_ready:
            failure = f"signing_keys: {checks['signing_keys']}"
        # Rows left out of the JWKS and the signing keys (corrupt), by kid: the other keys keep
        # serving, so this alone does not make the instance unready.
        unusable_keys = keystore_unusable()
    status = "unavailable" if failure else ("ready" if cache_ok else "degraded")
    body = {"status": status, "checks": checks}
    if unusable_keys:
        body["unusable_signing_keys"] = unusable_keys
    if failure:
        body["reason"] = failure
    return JsonResponse(body, status=503 if failure else 200)
