#!/usr/bin/env python3
"""What a failed client authentication costs at the token endpoint: a wrong secret for a real
client against an unknown client_id (issue 14.10), measured in one process.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/client_auth_cost.py [--rounds 2000]

Creates (and afterwards drops) a scratch database, registers one confidential client, then
sends POST /oauth/token through Django's test client in interleaved rounds: a wrong secret for
the client, the same unknown client_id again and again, and a new unknown client_id each time.
Prints, per case, the median and 90th percentile time per request and the database queries per
request after the first. The first two should match; the third pays one lookup per new id (no
cache can know an id it has never seen). Not a test: tests/security/test_client_auth_failures.py
checks the work done (queries, digests), never timings.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import database_url_required, scratch_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    with scratch_database(database_url_required(), prefix="authserver_clientauth") as url:
        run(args, url)


def run(args: argparse.Namespace, database_url: str) -> None:
    from tests.live import base_env, manage

    env = base_env(
        DATABASE_URL=database_url,
        AUTHSERVER_LOG_LEVEL="ERROR",
        AUTHSERVER_CACHE_KEY_PREFIX=f"bench-clientauth-{secrets.token_hex(4)}",
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
    )
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    if migrated.returncode != 0:
        sys.exit("bench: migrate failed:\n" + migrated.stderr)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "authserver.settings"
    import django

    django.setup()
    from django.db import connection
    from django.test import Client as HttpClient
    from django.test.utils import CaptureQueriesContext

    from oauth.clients import client_create

    client = client_create(
        name="Bench", client_type="confidential", grant_types=["client_credentials"]
    ).client
    http = HttpClient()
    body = urlencode({"grant_type": "client_credentials"})

    def basic(client_id: str) -> str:
        raw = f"{client_id}:{secrets.token_urlsafe(32)}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    cases = {
        "wrong secret": lambda n: client.client_id,
        "unknown client_id (repeated)": lambda n: "no-such-client",
        "unknown client_id (new each time)": lambda n: f"made-up-{n}",
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    queries: dict[str, int] = dict.fromkeys(cases, 0)
    for client_id in cases.values():  # warm-up: caches filled, audit rows written
        http.post(
            "/oauth/token",
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic(client_id(-1)),
        )
    for n in range(args.rounds):
        for name, client_id in cases.items():
            header = basic(client_id(n))
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = http.post(
                    "/oauth/token",
                    body,
                    content_type="application/x-www-form-urlencoded",
                    HTTP_AUTHORIZATION=header,
                )
                times[name].append(time.perf_counter() - started)
            if response.status_code != 401:
                sys.exit(f"bench: expected 401, got {response.status_code}: {response.content!r}")
            queries[name] += len(captured)
    print(f"{'case':36} {'median µs':>10} {'p90 µs':>10} {'queries/request':>16}")
    for name, samples in times.items():
        samples.sort()
        median = statistics.median(samples) * 1e6
        p90 = samples[int(len(samples) * 0.9)] * 1e6
        print(f"{name:36} {median:10.0f} {p90:10.0f} {queries[name] / args.rounds:16.2f}")


if __name__ == "__main__":
    main()
