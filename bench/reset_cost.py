#!/usr/bin/env python3
"""What a password reset request costs the server, next to one password hash (issue 16).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/reset_cost.py [--rounds 300]

Creates (and afterwards drops) a scratch database with one user, then sends POST
/password/forgot through Django's test client (the whole middleware stack, in one process) in
interleaved rounds: the user's address, and a new unknown address each time. Prints the median
and 90th percentile per case, the database queries per request, and the time of one hash with
the production hasher (Argon2id, the first of PASSWORD_HASHERS), which is what a sign-in costs.
The two cases should match (equal work: tests/flows/test_password_reset_live.py checks that over
HTTP); the request hashes no password, so it should cost a fraction of one hash. Mail is only
queued (one INSERT); delivery is the worker's.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import database_url_required, scratch_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with scratch_database(database_url_required(), prefix="authserver_resetcost") as url:
        run(args, url)


def run(args: argparse.Namespace, database_url: str) -> None:
    from tests.live import base_env, manage

    env = base_env(
        DATABASE_URL=database_url,
        AUTHSERVER_LOG_LEVEL="ERROR",
        AUTHSERVER_CACHE_KEY_PREFIX=f"bench-reset-{secrets.token_hex(4)}",
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
        # Measure the work, not the throttle's refusals.
        AUTHSERVER_PASSWORD_RESET_PER_LOGIN="1000000",  # noqa: S106 - a limit, not a secret
        AUTHSERVER_PASSWORD_RESET_PER_IP="1000000",  # noqa: S106 - a limit, not a secret
    )
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    if migrated.returncode != 0:
        sys.exit("bench: migrate failed:\n" + migrated.stderr)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "authserver.settings"
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django.test import Client as HttpClient
    from django.test.utils import CaptureQueriesContext

    from accounts.services import user_create
    from mail.models import Outbox

    user_create(username="bench", email="bench@example.com", password=secrets.token_urlsafe(16))
    http = HttpClient()
    cases = {
        "existing account": lambda n: "bench@example.com",
        "unknown address (new each time)": lambda n: f"nobody-{n}@example.com",
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    queries: dict[str, int] = dict.fromkeys(cases, 0)
    for login in cases.values():  # warm-up
        http.post("/password/forgot", {"login": login(-1)})
    for n in range(args.rounds):
        for name, login in cases.items():
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = http.post("/password/forgot", {"login": login(n)})
                times[name].append(time.perf_counter() - started)
            if response.status_code != 200:
                sys.exit(f"bench: expected 200, got {response.status_code}")
            queries[name] += len(captured)
    hashes = []
    for _ in range(max(20, args.rounds // 10)):
        started = time.perf_counter()
        make_password(secrets.token_urlsafe(16))
        hashes.append(time.perf_counter() - started)
    one_hash = statistics.median(hashes)
    print(f"{'case':34} {'median ms':>10} {'p90 ms':>8} {'queries':>8} {'x one hash':>11}")
    for name, samples in times.items():
        samples.sort()
        median = statistics.median(samples)
        p90 = samples[int(len(samples) * 0.9)]
        print(
            f"{name:34} {median * 1e3:10.2f} {p90 * 1e3:8.2f} "
            f"{queries[name] / args.rounds:8.1f} {median / one_hash:11.2f}"
        )
    print(f"{'one password hash (Argon2id)':34} {one_hash * 1e3:10.2f}")
    queued = Outbox.objects.count()
    print(f"mails queued: {queued} (one per request for the existing account, none for others)")


if __name__ == "__main__":
    main()
