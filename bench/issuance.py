#!/usr/bin/env python3
"""JWKS requests per second under gunicorn, and issuance-service tokens per second against the
raw RS256 sign rate of `cryptography` in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python bench/issuance.py [--seconds 5] [--workers 2] [--clients 8]
        [--reuse-database]

Creates (and afterwards drops) a scratch database, migrates it and lets the first request create
the signing key. Then:
1. JWKS: gunicorn with --workers serves /.well-known/jwks.json to --clients client threads spread
   over two client processes for --seconds (client and server share this machine's cores);
2. issuance: access_token_issue() in a loop in this process (warm key ring);
3. raw: RSAPrivateKey.sign(PKCS#1 v1.5, SHA-256) over a token-sized message with the same key;
and prints each rate and the ratio issuance / raw. Not a test; tests/tokens/test_bench_smoke.py
runs it briefly.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import database_url_required, scratch_database  # noqa: E402


def _client_process(port: int, threads: int, seconds: float, queue) -> None:
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/.well-known/jwks.json")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
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


def _rate(seconds: float, step) -> float:
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(20):
            step()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


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

    base = database_url_required()
    if args.reuse_database:
        run(args, base)
        return
    with scratch_database(base) as url:
        run(args, url)


def run(args: argparse.Namespace, database_url: str) -> None:
    import secrets

    from tests.live import Gunicorn, base_env, manage

    env = base_env(
        DATABASE_URL=database_url,
        AUTHSERVER_LOG_LEVEL="WARNING",
        AUTHSERVER_KEY_ENCRYPTION_KEY=os.environ.get("AUTHSERVER_KEY_ENCRYPTION_KEY")
        or secrets.token_urlsafe(32),
    )
    if not args.reuse_database:
        migrated = manage("migrate", "--noinput", env=env, timeout=300)
        if migrated.returncode != 0:
            sys.exit("bench: migrate failed:\n" + migrated.stderr)
    checked = manage("rotate_signing_keys", "--check", env=env)  # creates the first key
    if checked.returncode != 0:
        sys.exit("bench: " + checked.stderr.strip())

    with Gunicorn(env, workers=args.workers, extra=("--log-level", "warning")) as server:
        port = server.port
        for _ in range(50):  # warm every worker's key ring
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/.well-known/jwks.json")
            conn.getresponse().read()
            conn.close()
        queue = multiprocessing.Queue()
        per_process = max(1, args.clients // 2)
        procs = [
            multiprocessing.Process(
                target=_client_process, args=(port, per_process, args.seconds, queue)
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
    jwks_rate = ok / elapsed

    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "authserver.settings"
    import django

    django.setup()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from tokens.issuance import access_token_issue
    from tokens.keys import active_signing_key
    from tokens.verification import access_token_verify

    audience = "https://api.example.com"
    sample = access_token_issue(
        subject="5f0c1d1e-8a57-4c55-9a0e-6f1f7a3a2b10", audience=audience, client_id="bench"
    )
    key = active_signing_key().backend.signing_key
    message = sample.token.rsplit(".", 1)[0].encode()

    def issue() -> None:
        access_token_issue(
            subject="5f0c1d1e-8a57-4c55-9a0e-6f1f7a3a2b10",
            audience=audience,
            client_id="bench",
            scope="read write",
        )

    def sign() -> None:
        key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def verify() -> None:
        access_token_verify(sample.token, audience=audience)

    seconds = max(args.seconds / 2, 0.2)
    sign_rate = _rate(seconds, sign)
    issue_rate = _rate(seconds, issue)
    verify_rate = _rate(seconds, verify)

    print(
        f"JWKS under gunicorn ({args.workers} workers, {2 * per_process} client threads in 2 "
        f"processes, {elapsed:.1f} s): {jwks_rate:,.0f} req/s ({errors} errors)"
    )
    print(
        f"issuance service (access_token_issue, RS256 {key.key_size}): {issue_rate:,.0f} tokens/s"
    )
    print(f"raw cryptography RS256 sign, same key and message size: {sign_rate:,.0f} signs/s")
    print(f"ratio issuance / raw sign: {issue_rate / sign_rate:.2f}")
    print(f"verification service (access_token_verify): {verify_rate:,.0f} tokens/s")


if __name__ == "__main__":
    main()
