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

PASSPHRASE = secrets.token_urlsafe(24)  # a fresh valid password for every run


def main() -> None:
    rounds_main(run, doc=__doc__, rounds=100, prefix="authserver_signupcost")


def run(args: argparse.Namespace, database_url: str) -> None:
    django_setup_migrated(
        database_url,
        cache_prefix="bench-signup",
        AUTHSERVER_REGISTRATION="open",
        # Measure the work, not the throttle's refusals.
        AUTHSERVER_REGISTRATION_THROTTLE_PER_IP="1000000",
    )
    from django.test import Client as HttpClient

    from accounts.models import User
    from accounts.services import user_create
    from mail.models import Outbox

    user_create(username="bench", email="bench@example.com", password=secrets.token_urlsafe(16))
    http = HttpClient()

    def signup(username: str, email: str):
        return partial(
            http.post,
            "/signup",
            {
                "username": username,
                "email": email,
                "password1": PASSPHRASE,
                "password2": PASSPHRASE,
            },
        )

    cases = {
        "new account": lambda n: signup(f"new{n}", f"new{n}@example.org"),
        "existing address": lambda n: signup(f"other{n}", "bench@example.com"),
        "taken username": lambda n: signup("bench", f"fresh{n}@example.org"),
    }
    times, queries = rounds_measure(cases, rounds=args.rounds, status=303)
    one_hash = one_hash_seconds(max(20, args.rounds // 5))
    report_against_hash(times, queries, rounds=args.rounds, one_hash=one_hash)
    print(
        f"accounts created: {User.objects.count() - 1}, mails queued: {Outbox.objects.count()} "
        "(one per request in every case)"
    )


if __name__ == "__main__":
    main()
