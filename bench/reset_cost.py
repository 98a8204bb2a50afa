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
import secrets
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rounds import (  # noqa: E402
    one_hash_seconds,
    report_against_hash,
    rounds_main,
    rounds_measure,
)
from bench.scratch import django_setup_migrated  # noqa: E402


def main() -> None:
    rounds_main(run, doc=__doc__, rounds=300, prefix="authserver_resetcost")


def run(args: argparse.Namespace, database_url: str) -> None:
    django_setup_migrated(
        database_url,
        cache_prefix="bench-reset",
        # Measure the work, not the throttle's refusals.
        AUTHSERVER_PASSWORD_RESET_PER_LOGIN="1000000",  # noqa: S106 - a limit, not a secret
        AUTHSERVER_PASSWORD_RESET_PER_IP="1000000",  # noqa: S106 - a limit, not a secret
    )
    from django.test import Client as HttpClient

    from accounts.services import user_create
    from mail.models import Outbox

    user_create(username="bench", email="bench@example.com", password=secrets.token_urlsafe(16))
    http = HttpClient()

    def forgot(login: str):
        return partial(http.post, "/password/forgot", {"login": login})

    cases = {
        "existing account": lambda n: forgot("bench@example.com"),
        "unknown address (new each time)": lambda n: forgot(f"nobody-{n}@example.com"),
    }
    times, queries = rounds_measure(cases, rounds=args.rounds, status=200)
    one_hash = one_hash_seconds(max(20, args.rounds // 10))
    report_against_hash(times, queries, rounds=args.rounds, one_hash=one_hash)
    queued = Outbox.objects.count()
    print(f"mails queued: {queued} (one per request for the existing account, none for others)")


if __name__ == "__main__":
    main()
