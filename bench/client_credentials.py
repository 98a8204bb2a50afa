#!/usr/bin/env python3
"""client_credentials tokens per second under gunicorn: POST /oauth/token end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/client_credentials.py [--seconds 5] [--workers 2] [--clients 8]
        [--reuse-database]

Creates (and afterwards drops) a scratch database, migrates it, creates the signing key and a
confidential client with `manage.py create_client`, starts gunicorn with --workers, and has
--clients threads in two client processes request tokens (client_secret_basic, a new connection
per request) for --seconds. Each token is a full request: form parsing, client authentication
(cached client record, SHA-256 secret check), scope checks, an RS256 signature. Client and
server share this machine's cores. Not a test; tests/oauth/test_bench_smoke.py runs it briefly.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = b"grant_type=client_credentials"


def _client_process(port: int, threads: int, seconds: float, auth: str, queue) -> None:
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.monotonic() + seconds
    headers = {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"}

    def run(index: int) -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("POST", "/oauth/token", body=BODY, headers=headers)
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and b'"access_token"' in body:
                    counts[index] += 1
                else:
                    errors[index] += 1
            except OSError:
                errors[index] += 1
            finally:
                conn.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((sum(counts), sum(errors)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--reuse-database",
        action="store_true",
        help="use DATABASE_URL as it is (already migrated) instead of a scratch database",
    )
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit(
            "bench: DATABASE_URL must point at PostgreSQL (an account that may CREATE DATABASE)"
        )
    if args.reuse_database:
        run(args, base)
        return
    import psycopg

    scratch = f"authserver_bench_cc_{os.getpid()}"
    scratch_url = urlunsplit(urlsplit(base)._replace(path="/" + scratch))
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {scratch}")
        admin.execute(f"CREATE DATABASE {scratch}")
    try:
        run(args, scratch_url)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


def run(args: argparse.Namespace, database_url: str) -> None:
    from tests.live import Gunicorn, base_env, manage

    env = base_env(
        DATABASE_URL=database_url,
        AUTHSERVER_LOG_LEVEL="WARNING",
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
        AUTHSERVER_CACHE_KEY_PREFIX=f"authserver-bench-{secrets.token_hex(4)}",
    )
    if not args.reuse_database:
        migrated = manage("migrate", "--noinput", env=env, timeout=300)
        if migrated.returncode != 0:
            sys.exit("bench: migrate failed:\n" + migrated.stderr)
    checked = manage("rotate_signing_keys", "--check", env=env)  # creates the first key
    if checked.returncode != 0:
        sys.exit("bench: " + checked.stderr.strip())
    created = manage(
        "create_client",
        "--name",
        "bench",
        "--type",
        "confidential",
        "--grant",
        "client_credentials",
        "--scope",
        "bench:read",
        "--audience",
        "https://api.example.com",
        "--json",
        env=env,
    )
    if created.returncode != 0:
        sys.exit("bench: create_client failed: " + created.stderr.strip())
    client = json.loads(created.stdout)
    credentials = f"{client['client_id']}:{client['client_secret']}".encode()
    auth = "Basic " + base64.b64encode(credentials).decode()

    with Gunicorn(env, workers=args.workers, extra=("--log-level", "warning")) as server:
        port = server.port
        for _ in range(20):  # warm every worker: key ring, client cache, connections
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request(
                "POST",
                "/oauth/token",
                body=BODY,
                headers={
                    "Authorization": auth,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            response = conn.getresponse()
            if response.status != 200:
                sys.exit(f"bench: warm-up got {response.status}: {response.read()[:200]!r}")
            response.read()
            conn.close()
        queue = multiprocessing.Queue()
        per_process = max(1, args.clients // 2)
        procs = [
            multiprocessing.Process(
                target=_client_process, args=(port, per_process, args.seconds, auth, queue)
            )
            for _ in range(2)
        ]
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        results = [queue.get() for _ in procs]
        for proc in procs:
            proc.join()
        elapsed = time.perf_counter() - started
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    print(
        f"client_credentials under gunicorn ({args.workers} workers, {2 * per_process} client "
        f"threads in 2 processes, {elapsed:.1f} s): {ok / elapsed:,.0f} tokens/s "
        f"({ok} tokens, {errors} errors)"
    )


if __name__ == "__main__":
    main()
