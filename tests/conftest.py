from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import User
from tests.live import base_env


def pytest_collection_modifyitems(items):
    """Tests marked slow (gunicorn, a browser, a host install) first, in collection order, then
    the rest: under pytest-xdist the long ones start at once on every worker and the many short
    ones fill in behind them, instead of a long test starting last and running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


PASSWORD = "correct horse battery staple"  # test-only credential


@pytest.fixture(autouse=True)
def _fresh_signing_key_cache():
    """Each test sees the signing keys of its own database, not a snapshot from an earlier test."""
    from tokens.keys import keyring_reset

    keyring_reset()
    yield
    keyring_reset()


@pytest.fixture(autouse=True)
def _fresh_cache_namespace(settings):
    """Each test gets its own cache key prefix: throttle and lockout counters never leak between
    tests, and nothing is flushed under another test run sharing the Redis database."""
    caches = {alias: dict(conf) for alias, conf in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"authserver-test-{uuid.uuid4().hex}"
    settings.CACHES = caches


@pytest.fixture
def make_user(db):
    counter = iter(range(1, 10_000))

    def make(
        username: str | None = None, email: str | None = None, password: str = PASSWORD, **extra
    ) -> User:
        n = next(counter)
        username = username or f"user{n}"
        user = User(username=username, email=email or f"{username}@example.com", **extra)
        user.set_password(password)
        user.save()
        return user

    return make


def _test_database_url() -> str:
    """The URL of pytest-django's test database, for child processes to share it."""
    params = connection.settings_dict
    auth = quote(params["USER"] or "")
    if params.get("PASSWORD"):
        auth += ":" + quote(params["PASSWORD"])
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{quote(params['NAME'])}"


@pytest.fixture
def child_env(transactional_db):
    """Environment for an authserver child process sharing this test's PostgreSQL database.

    Tests using it run with transaction=True semantics, so rows they create are committed and
    visible to the child process.
    """
    return base_env(
        DATABASE_URL=_test_database_url(),
        SECRET_KEY=settings.SECRET_KEY,
        AUTHSERVER_ISSUER=settings.AUTHSERVER_ISSUER,
        # Throttle and lockout counters of one test never reach another.
        AUTHSERVER_CACHE_KEY_PREFIX=f"authserver-child-{uuid.uuid4().hex}",
    )
