#!/usr/bin/env python3
"""What a sign-up costs the server, next to one password hash (issue 16).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/signup_cost.py [--rounds 100]

Creates (and afterwards drops) a scratch database with one user, turns sign-up on
(AUTHSERVER_REGISTRATION=open, throttle out of the way) and sends POST /signup through Django's
test client (the whole middleware stack and CSRF middleware, in one process) in interleaved
rounds: a new address and username each time (an account is created and a confirmation link
queued), the existing user's address (a "someone tried to sign up" mail is queued), and a
taken username with a new address. Prints the median and 90th percentile per case, the
database queries per request, and the time of one hash with the production hasher (Argon2id,
the first of PASSWORD_HASHERS). Each case hashes the password once (equal work, so the answer's
timing does not tell which case it was; tests/accounts/test_signup_live.py checks that over
HTTP), so a sign-up should cost about one hash plus the password validators and a few writes.
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

PASSPHRASE = secrets.token_urlsafe(24)  # a fresh valid password for every run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    with scratch_database(database_url_required(), prefix="authserver_signupcost") as url:
        run(args, url)


def run(args: argparse.Namespace, database_url: str) -> None:
    from tests.live import base_env, manage

    env = base_env(
        DATABASE_URL=database_url,
        AUTHSERVER_LOG_LEVEL="ERROR",
        AUTHSERVER_CACHE_KEY_PREFIX=f"bench-signup-{secrets.token_hex(4)}",
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
        AUTHSERVER_REGISTRATION="open",
        # Measure the work, not the throttle's refusals.
        AUTHSERVER_REGISTRATION_THROTTLE_PER_IP="1000000",
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

    from accounts.models import User
    from accounts.services import user_create
    from mail.models import Outbox

    user_create(username="bench", email="bench@example.com", password=secrets.token_urlsafe(16))
    http = HttpClient()
    cases = {
        "new account": lambda n: (f"new{n}", f"new{n}@example.org"),
        "existing address": lambda n: (f"other{n}", "bench@example.com"),
        "taken username": lambda n: ("bench", f"fresh{n}@example.org"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    queries: dict[str, int] = dict.fromkeys(cases, 0)

    def post(username: str, email: str):
        return http.post(
            "/signup",
            {
                "username": username,
                "email": email,
                "password1": PASSPHRASE,
                "password2": PASSPHRASE,
            },
        )

    for fields in cases.values():  # warm-up
        post(*fields(-1))
    for n in range(args.rounds):
        for name, fields in cases.items():
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = post(*fields(n))
                times[name].append(time.perf_counter() - started)
            if response.status_code != 303:
                sys.exit(f"bench: expected 303, got {response.status_code}")
            queries[name] += len(captured)
    hashes = []
    for _ in range(max(20, args.rounds // 5)):
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
    print(
        f"accounts created: {User.objects.count() - 1}, mails queued: {Outbox.objects.count()} "
        "(one per request in every case)"
    )


if __name__ == "__main__":
    main()
