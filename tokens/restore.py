"""After a database restore (`manage.py after_restore`, README "Backup and restore").

A restored database brings back the signing keys as they were at the backup: a key revoked
after it is active again, and nothing in it says so. The shared cache still holds what the live
database said a minute ago (clients the restore deleted keep authenticating from it). So after
a restore: a fresh key signs at once, every restored key is taken out of service
(tokens.rotation.signing_keys_replace_all), and this deployment's cache prefix is emptied.

Whether the database was restored is told by tokens.models.RestoreMarker: its row records the
OID of its own table, which a restore from a dump changes. Run against the live database, or a
second time, after_restore changes nothing and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from tokens.models import RestoreMarker
from tokens.rotation import KeyStoreChange, signing_keys_replace_all

logger = logging.getLogger("authserver.keys")


@dataclass(frozen=True)
class RestoreState:
    # True: restored from a dump since the last after_restore; False: not; None: cannot tell.
    restored: bool | None
    detail: str


def _table_oid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'tokens_restoremarker'::regclass::oid")
        return int(cursor.fetchone()[0])


def restore_state() -> RestoreState:
    """Was this database restored from a dump since it was created or last went through
    after_restore?"""
    if connection.vendor != "postgresql":
        return RestoreState(None, "only a PostgreSQL database can be recognised as restored")
    marker = RestoreMarker.objects.order_by("-recorded_at").first()
    if marker is None or marker.table_oid is None:
        return RestoreState(
            None,
            "this database has no restore marker (a backup taken before the release that added "
            "it, or a marker row deleted)",
        )
    oid = _table_oid()
    if marker.table_oid != oid:
        return RestoreState(
            True, f"restored from a dump taken at or after {marker.recorded_at:%Y-%m-%d %H:%M}Z"
        )
    if marker.after_restore_at is not None:
        return RestoreState(
            False,
            "not restored since the last after_restore, at "
            f"{marker.after_restore_at:%Y-%m-%d %H:%M:%S}Z",
        )
    return RestoreState(False, "this database was never restored from a dump")


def _marker_record(now) -> None:
    RestoreMarker.objects.all().delete()
    oid = _table_oid() if connection.vendor == "postgresql" else None
    RestoreMarker.objects.create(table_oid=oid, recorded_at=now, after_restore_at=now)


def cache_prefix_clear() -> int:
    """Delete every shared-cache entry of this deployment (AUTHSERVER_CACHE_KEY_PREFIX) and
    nothing else; the number deleted, or -1 when the backend cannot count (database cache)."""
    conf = settings.CACHES["default"]
    if conf["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        cache.clear()  # the database cache table belongs to this deployment alone
        return -1
    import redis

    client = redis.Redis.from_url(conf["LOCATION"], socket_timeout=5)
    # Django's keys are "<prefix>:<version>:<key>"; glob characters in the prefix are literal.
    prefix = conf.get("KEY_PREFIX", "")
    pattern = "".join(f"[{c}]" if c in "*?[]\\" else c for c in prefix) + ":*"
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


@dataclass(frozen=True)
class AfterRestoreReport:
    state: RestoreState
    change: KeyStoreChange | None = None
    cache_entries_deleted: int | None = None


def after_restore(*, force: bool = False, keep_published: bool = False) -> AfterRestoreReport:
    """Take the restored keys out of service, sign with a fresh key and empty the cache; or, if
    the database was not restored (and not `force`), do nothing."""
    state = restore_state()
    if state.restored is not True and not force:
        return AfterRestoreReport(state)
    now = timezone.now()
    with transaction.atomic():
        change = signing_keys_replace_all(now=now, keep_published=keep_published)
        _marker_record(now)
    # After the commit: nothing read from the cache from now on predates the new keys.
    deleted = cache_prefix_clear()
    # Every process compares these generation tokens at most once a second and drops its own
    # copies (keys, clients) when they change; a deleted token would read as "unchanged" to a
    # process that never saw one.
    from oauth.clients import client_cache_generation_bump
    from tokens.keys import keyring_changed

    keyring_changed()
    client_cache_generation_bump()
    logger.warning("after_restore: %s; %s cache entries deleted", change.summary(), deleted)
    return AfterRestoreReport(state, change, deleted)
