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
import secrets
import statistics
import sys
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rounds import rounds_main, rounds_measure  # noqa: E402
from bench.scratch import django_setup_migrated  # noqa: E402


def main() -> None:
    rounds_main(run, doc=__doc__, rounds=2000, prefix="authserver_clientauth")


def run(args: argparse.Namespace, database_url: str) -> None:
    django_setup_migrated(database_url, cache_prefix="bench-clientauth")
    from django.test import Client as HttpClient

    from oauth.clients import client_create

    client = client_create(
        name="Bench", client_type="confidential", grant_types=["client_credentials"]
    ).client
    http = HttpClient()
    body = urlencode({"grant_type": "client_credentials"})

    def token_request(client_id: str):
        # A new wrong secret each time, encoded before the timing starts.
        raw = f"{client_id}:{secrets.token_urlsafe(32)}".encode()
        return partial(
            http.post,
            "/oauth/token",
            body,
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION="Basic " + base64.b64encode(raw).decode(),
        )

    cases = {
        "wrong secret": lambda n: token_request(client.client_id),
        "unknown client_id (repeated)": lambda n: token_request("no-such-client"),
        "unknown client_id (new each time)": lambda n: token_request(f"made-up-{n}"),
    }
    # The warm-up request of each case fills the caches and writes the first audit rows.
    times, queries = rounds_measure(cases, rounds=args.rounds, status=401)
    print(f"{'case':36} {'median µs':>10} {'p90 µs':>10} {'queries/request':>16}")
    for name, samples in times.items():
        samples.sort()
        median = statistics.median(samples) * 1e6
        p90 = samples[int(len(samples) * 0.9)] * 1e6
        print(f"{name:36} {median:10.0f} {p90:10.0f} {queries[name] / args.rounds:16.2f}")


if __name__ == "__main__":
    main()
