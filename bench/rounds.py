"""Requests through Django's test client (the whole middleware stack, in one process) in
interleaved rounds of named cases: the time and the database queries of each request, and the
time of one password hash to set them against. Django must be set up (bench/scratch.py)."""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Callable

from bench.scratch import database_url_required, scratch_database

# A case: round number -> the request to time, ready to send (anything worked out for it, such
# as a header, is done outside the timing).
Case = Callable[[int], Callable[[], object]]


def rounds_main(
    run: Callable[[argparse.Namespace, str], None], *, doc: str, rounds: int, prefix: str
) -> None:
    """A script's command line (`--rounds`, default `rounds`; described by its docstring's first
    line): `run(args, database_url)` on a scratch database named after `prefix`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    args = parser.parse_args()
    with scratch_database(database_url_required(), prefix=prefix) as url:
        run(args, url)


def rounds_measure(
    cases: dict[str, Case], *, rounds: int, status: int
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """One warm-up request per case (round -1), then `rounds` rounds of one request per case.
    Returns each case's times in seconds and its total of database queries. Exits unless every
    timed request answers `status`."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times: dict[str, list[float]] = {name: [] for name in cases}
    queries: dict[str, int] = dict.fromkeys(cases, 0)
    for case in cases.values():
        case(-1)()
    for n in range(rounds):
        for name, case in cases.items():
            send = case(n)
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = send()
                times[name].append(time.perf_counter() - started)
            if response.status_code != status:
                sys.exit(
                    f"bench: expected {status}, got {response.status_code}: "
                    f"{response.content[:300]!r}"
                )
            queries[name] += len(captured)
    return times, queries


def one_hash_seconds(samples: int) -> float:
    """The median time of one hash with the first of PASSWORD_HASHERS (what a sign-in costs)."""
    from django.contrib.auth.hashers import make_password

    hashes = []
    for _ in range(samples):
        started = time.perf_counter()
        make_password(secrets.token_urlsafe(16))
        hashes.append(time.perf_counter() - started)
    return statistics.median(hashes)


def report_against_hash(
    times: dict[str, list[float]], queries: dict[str, int], *, rounds: int, one_hash: float
) -> None:
    print(f"{'case':34} {'median ms':>10} {'p90 ms':>8} {'queries':>8} {'x one hash':>11}")
    for name, samples in times.items():
        samples.sort()
        median = statistics.median(samples)
        p90 = samples[int(len(samples) * 0.9)]
        print(
            f"{name:34} {median * 1e3:10.2f} {p90 * 1e3:8.2f} "
            f"{queries[name] / rounds:8.1f} {median / one_hash:11.2f}"
        )
    print(f"{'one password hash (Argon2id)':34} {one_hash * 1e3:10.2f}")
