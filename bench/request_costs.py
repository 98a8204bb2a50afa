#!/usr/bin/env python3
"""What each hot request asks of PostgreSQL and Redis: statements (and writes) and Redis
commands per request, counted in-process through the whole Django stack (middleware included).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/request_costs.py [--requests 50]

Creates (and afterwards drops) a scratch database and uses its own Redis key prefix (deleted at
the end). The figures feed the capacity planning (docs/concepts/capacity.md); the CPU per
request comes from `make bench`, the bytes per session and per refresh from the scale benchmark.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRITES = ("INSERT", "UPDATE", "DELETE")
FORM = "application/x-www-form-urlencoded"


class RedisCounter:
    """Counts the commands this process sends to Redis (single calls and pipelined ones)."""

    def __init__(self) -> None:
        self.count = 0

    def install(self) -> None:
        import redis.client

        counter = self
        single = redis.client.Redis.execute_command
        pipelined = redis.client.Pipeline.execute

        def execute_command(client, *args, **kwargs):
            if not isinstance(client, redis.client.Pipeline):
                counter.count += 1
            return single(client, *args, **kwargs)

        def execute(pipeline, *args, **kwargs):
            counter.count += len(pipeline.command_stack)
            return pipelined(pipeline, *args, **kwargs)

        redis.client.Redis.execute_command = execute_command
        redis.client.Pipeline.execute = execute


def kind(sql: str) -> str:
    words = sql.lstrip("( ").split(None, 1)
    first = words[0].upper() if words else ""
    if first == "WITH":  # a data-modifying CTE writes
        upper = sql.upper()
        return "write" if any(f" {w} " in upper or f"({w} " in upper for w in WRITES) else "read"
    return "write" if first in WRITES else "read"


def measure(name: str, request: Callable[[], object], n: int, redis_counter: RedisCounter):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    request()  # warm: caches filled, statements prepared, as on a running server
    statements: Counter = Counter()
    redis_before = redis_counter.count
    with CaptureQueriesContext(connection) as queries:
        for _ in range(n):
            response = request()
            if response.status_code not in (200, 204):
                raise SystemExit(f"{name}: {response.status_code} {response.content[:200]!r}")
    for query in queries.captured_queries:
        statements[kind(query["sql"])] += 1
    return {
        "statements": sum(statements.values()) / n,
        "writes": statements["write"] / n,
        "redis_commands": (redis_counter.count - redis_before) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    scratch = f"authserver_request_costs_{os.getpid()}"
    prefix = f"costs{os.getpid()}"
    os.environ.update(
        DATABASE_URL=urlunsplit(urlsplit(base)._replace(path="/" + scratch)),
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        DJANGO_SETTINGS_MODULE="authserver.settings",
        AUTHSERVER_MODE="production",
        SECRET_KEY=secrets.token_urlsafe(64),
        AUTHSERVER_KEY_ENCRYPTION_KEY=secrets.token_urlsafe(32),
        AUTHSERVER_ISSUER="https://auth.bench.invalid",
        AUTHSERVER_SSL_REDIRECT="false",
        ALLOWED_HOSTS="testserver",
        AUTHSERVER_CACHE_KEY_PREFIX=prefix,
        AUTHSERVER_LOG_LEVEL="WARNING",
    )
    import psycopg

    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {scratch}")
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        results = run(args.requests)
        from django.db import connection

        connection.close()
        print(f"per request, mean of {args.requests} (after one warm-up request each)")
        print(f"{'request':28} {'SQL statements':>15} {'writes':>8} {'Redis commands':>15}")
        footprint = results.pop("(Redis keys one sign-in leaves)")
        for name, row in results.items():
            print(
                f"{name:28} {row['statements']:>15.2f} {row['writes']:>8.2f} "
                f"{row['redis_commands']:>15.2f}"
            )
        print(
            f"one sign-in from a new address by a new login leaves {footprint['writes']} Redis "
            f"keys, {footprint['redis_commands']} bytes (MEMORY USAGE), until they expire"
        )
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def run(n: int) -> dict:
    from django.contrib.auth.hashers import make_password
    from django.test import Client

    from accounts.models import User
    from authserver.conf import get_config
    from oauth.clients import client_create
    from sessions.apis import FIRST_PARTY_CLIENT_ID
    from sessions.services import session_start
    from tokens.keys import active_signing_key

    redis_counter = RedisCounter()
    redis_counter.install()
    password = secrets.token_urlsafe(16)
    user = User.objects.create(
        username="costs", email="costs@bench.invalid", password=make_password(password)
    )
    active_signing_key()
    cc = client_create(
        name="cc", client_type="confidential", grant_types=["client_credentials"], scopes=["x"]
    )
    rs = client_create(
        name="rs",
        client_type="confidential",
        grant_types=["client_credentials"],
        is_resource_server=True,
    )
    app = client_create(
        name="app",
        client_type="confidential",
        grant_types=["authorization_code", "refresh_token"],
        redirect_uris=["https://app.bench.invalid/cb"],
        scopes=["openid", "profile", "email", "offline_access"],
    )
    first_party = session_start(
        user=user, client_id=FIRST_PARTY_CLIENT_ID, audience=[get_config().default_audience]
    )
    grant = session_start(
        user=user,
        client_id=app.client.client_id,
        audience=[app.client.client_id],
        scope="openid profile email",
    )
    http = Client(REMOTE_ADDR="192.0.2.10")

    def basic(client_id: str, secret: str) -> str:
        return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()

    state = {"refresh": first_party.refresh_token}

    def refresh():
        response = http.post(
            "/api/v1/auth/refresh",
            {"refresh_token": state["refresh"]},
            content_type="application/json",
        )
        state["refresh"] = response.json()["refresh_token"]
        return response

    bearer = {"HTTP_AUTHORIZATION": f"Bearer {first_party.access_token}"}
    requests = {
        "GET /healthz": lambda: http.get("/healthz"),
        "GET JWKS": lambda: http.get("/.well-known/jwks.json"),
        "POST login (first-party)": lambda: http.post(
            "/api/v1/auth/login",
            {"username": "costs", "password": password},
            content_type="application/json",
        ),
        "POST refresh (first-party)": refresh,
        "POST token client_credentials": lambda: http.post(
            "/oauth/token",
            "grant_type=client_credentials",
            content_type=FORM,
            HTTP_AUTHORIZATION=basic(cc.client.client_id, cc.secret),
        ),
        "POST introspect": lambda: http.post(
            "/oauth/introspect",
            f"token={grant.access_token}",
            content_type=FORM,
            HTTP_AUTHORIZATION=basic(rs.client.client_id, rs.secret),
        ),
        "GET userinfo": lambda: http.get(
            "/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {grant.access_token}"
        ),
        "GET session list": lambda: http.get("/api/v1/sessions", **bearer),
    }
    results = {name: measure(name, call, n, redis_counter) for name, call in requests.items()}
    results["(Redis keys one sign-in leaves)"] = sign_in_footprint(http, password)
    return results


def sign_in_footprint(http, password: str) -> dict:
    """The Redis keys (and their bytes, MEMORY USAGE) that one sign-in from a new address by a
    new login leaves behind until they expire: what the throttle keeps per address and login."""
    import redis
    from django.conf import settings

    from accounts.models import User

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    before = set(client.scan_iter(f"{prefix}*"))
    user = User(username="footprint", email="footprint@bench.invalid")
    user.set_password(password)
    user.save()
    response = http.post(
        "/api/v1/auth/login",
        {"username": "footprint", "password": password},
        content_type="application/json",
        REMOTE_ADDR="198.51.100.77",
    )
    assert response.status_code == 200, response.content  # noqa: S101
    new = set(client.scan_iter(f"{prefix}*")) - before
    size = sum(client.memory_usage(key) or 0 for key in new)
    return {"statements": float("nan"), "writes": len(new), "redis_commands": size}


if __name__ == "__main__":
    main()
