from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from tests.live import free_port

# A fixed, aware instant for the `now` seams (window arithmetic below assumes 300 s windows).
T0 = datetime(2031, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache_namespace(settings):
    """Each test gets its own cache key prefix: throttle and lockout counters never leak between
    tests, and nothing is flushed under another test run sharing the Redis database."""
    caches = {alias: dict(conf) for alias, conf in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"authserver-test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def database_cache(settings, db):
    """The default cache switched to Django's DatabaseCache (the no-REDIS_URL production setup)."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "authserver_cache",
            "KEY_PREFIX": f"authserver-test-{uuid.uuid4().hex}",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    call_command("createcachetable", verbosity=0)


@pytest.fixture
def dead_cache(settings):
    """The default cache pointed at a Redis port nothing listens on."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


@pytest.fixture
def loose_throttle(settings):
    """Throttle limits out of the way, for tests about the lockout alone."""
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_IP = 10_000
    settings.AUTHSERVER_LOGIN_THROTTLE_PER_LOGIN = 10_000
