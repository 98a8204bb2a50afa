"""Atomic counters in fixed time windows, kept in the shared default cache.

One mechanism for every "count this, per bucket and window" rule: the login throttle
(accounts/throttling.py) limits attempts with it, and client-authentication failures
(oauth/client_auth.py) are audited once per bucket and window and only counted afterwards. A
counter lives in the cache every worker and instance shares (Redis, or the database cache table),
so a per-process count cannot multiply an attacker's budget by the number of workers.

Any cache error raises CacheUnavailable; each caller decides what that means (the login service
refuses logins, the client-auth audit writes its row).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import caches
from django.core.cache.backends.db import BaseDatabaseCache
from django.db import connections, router, transaction

logger = logging.getLogger(__name__)

# Cache entries outlive their window by this much, so a slightly skewed clock between instances
# never reads a window that has already expired.
TTL_SLACK_SECONDS = 60


class CacheUnavailable(Exception):
    """The shared cache did not answer; a rule counted there cannot be enforced."""


@dataclass(frozen=True, slots=True)
class WindowCount:
    """This event's number in its bucket's window (1 for the first), the window's index and
    the seconds until it ends."""

    count: int
    index: int
    remaining: int


@contextlib.contextmanager
def cache_guard() -> Iterator[None]:
    try:
        yield
    except CacheUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any cache failure is reported the same way
        logger.error("shared counters: cache unavailable (%s)", exc.__class__.__name__)
        raise CacheUnavailable(exc.__class__.__name__) from None


def shared_cache():
    return caches["default"]


def counter_incr(key: str, ttl: int) -> int:
    """Atomically add one to a counter, create it at 1 if absent, and (re)set its expiry."""
    with cache_guard():
        cache = shared_cache()
        if isinstance(cache, BaseDatabaseCache):
            return _db_incr(cache, key, ttl)
        for _ in range(3):
            cache.add(key, 0, ttl)
            try:
                value = cache.incr(key)
            except ValueError:  # expired between add and incr
                continue
            cache.touch(key, ttl)
            return value
        raise CacheUnavailable("counter vanished repeatedly")


def counter_decr(key: str, ttl: int) -> None:
    """Atomically take one from a counter that `counter_incr` made; nothing if it has expired."""
    with cache_guard():
        cache = shared_cache()
        if isinstance(cache, BaseDatabaseCache):
            _db_incr(cache, key, ttl, delta=-1)
            return
        try:
            value = cache.decr(key)
        except ValueError:  # the window's counter expired: nothing left to give back
            return
        if value < 0:
            # Django's decr checks that the key exists, then runs DECRBY: if it expired in
            # between, Redis made a new key at -1 without an expiry (a free slot, forever).
            cache.delete(key)


def _db_incr(cache: BaseDatabaseCache, key: str, ttl: int, delta: int = 1) -> int:
    # Django's DatabaseCache.incr is get-then-set, which loses updates between workers. Serialise
    # increments of one key with a transaction-scoped advisory lock (PostgreSQL); SQLite, for
    # `make run` only, serialises writers itself.
    db = router.db_for_write(cache.cache_model_class)
    connection = connections[db]
    with transaction.atomic(using=db):
        if connection.vendor == "postgresql":
            lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
        current = cache.get(key)
        if current is None and delta < 0:
            return 0  # expired: nothing to give back
        value = int(current or 0) + delta
        cache.set(key, value, ttl)
    return value


def window_at(now: datetime, seconds: int) -> tuple[int, int]:
    """(window index, seconds until it ends) of the fixed window holding `now`."""
    stamp = now.timestamp()
    index = math.floor(stamp / seconds)
    remaining = math.ceil((index + 1) * seconds - stamp)
    return index, max(1, remaining)


def window_key(name: str, index: int, bucket: str) -> str:
    """The cache key of `bucket`'s counter in window `index`. `bucket` must be short and
    bounded (a digest, an IP): callers never put raw request input into a key."""
    return f"{name}:{index}:{bucket}"


def window_count(
    *, name: str, bucket: str, window_seconds: int, now: datetime, keep_windows: int = 1
) -> WindowCount:
    """Count one event for `bucket` in the current window of `name`.

    The counter is kept for `keep_windows` windows (plus slack), so a caller can still read a
    finished window's total while the next one runs (`window_total`)."""
    index, remaining = window_at(now, window_seconds)
    ttl = remaining + (keep_windows - 1) * window_seconds + TTL_SLACK_SECONDS
    count = counter_incr(window_key(name, index, bucket), ttl)
    return WindowCount(count=count, index=index, remaining=remaining)


def window_total(*, name: str, bucket: str, index: int) -> int:
    """How many events `bucket` counted in window `index` (0 once the counter has expired)."""
    with cache_guard():
        return int(shared_cache().get(window_key(name, index, bucket)) or 0)
