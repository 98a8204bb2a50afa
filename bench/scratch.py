"""A scratch PostgreSQL database for a benchmark run: created empty, dropped afterwards; and
Django set up in the benchmark's own process against it."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


def database_url_required() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "bench: DATABASE_URL must point at PostgreSQL (an account that may CREATE DATABASE)"
        )
    return url


def url_with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.contextmanager
def scratch_database(base_url: str, prefix: str = "authserver_bench") -> Iterator[str]:
    """Yield the URL of a new, empty database next to `base_url`'s; drop it on the way out."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield url_with_database(base_url, name)
    finally:
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def django_scratch_database(base_url: str, prefix: str) -> Iterator[None]:
    """A scratch database (scratch_database), migrated by this process, with Django set up on
    it (DJANGO_SETTINGS_MODULE as the environment has it, else authserver.settings) as for a
    management command: with the AUTHSERVER_DB_COMMAND_* timeouts, not the serving ones, since
    what these scripts fill, explain and purge is a command's work (a CHECKPOINT alone can take
    longer than the 1.5 s a request may). Django's connection is closed before the drop."""
    with scratch_database(base_url, prefix) as url:
        os.environ["DATABASE_URL"] = url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
        os.environ["_AUTHSERVER_MANAGEMENT_COMMAND"] = "1"  # as manage.py sets it
        import django
        from django.core.management import call_command

        django.setup()
        try:
            call_command("migrate", verbosity=0)
            yield
        finally:
            from django.db import connection

            connection.close()


def django_setup_migrated(database_url: str, *, cache_prefix: str, **overrides: str) -> None:
    """Migrate the database at `database_url` with manage.py in a child process, then set Django
    up in this process against it, with a server's environment (tests/live.py base_env): only
    errors logged, a cache key prefix of this run's own (`cache_prefix` and a random part), the
    environment's key-encryption key or a new one, and `overrides`."""
    from tests.live import base_env, manage

    env = base_env(
        DATABASE_URL=database_url,
        AUTHSERVER_LOG_LEVEL="ERROR",
        AUTHSERVER_CACHE_KEY_PREFIX=f"{cache_prefix}-{secrets.token_hex(4)}",
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
        **overrides,
    )
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    if migrated.returncode != 0:
        sys.exit("bench: migrate failed:\n" + migrated.stderr)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "authserver.settings"
    import django

    django.setup()
