#!/usr/bin/env python3
"""What `purge_expired_sessions` costs per ended session, and what FOREIGN KEY constraints on
the references to a session would add (sessions/models.py, above SessionQuerySet).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/purge_cost.py [--sessions 200000] [--batch-size 5000]

Creates (and afterwards drops) a scratch database, migrates it, fills it with ended sessions
(generate_series), purges them and reports the wall time and the CPU time of the PostgreSQL
backend and of this process. Then it adds the four constraints the schema leaves out (DEFERRABLE
INITIALLY DEFERRED, as Django would create them), fills and purges again. CPU time is what a
dedicated database server would spend; wall time on a shared machine also counts waiting.

`--orders heap,index` compares the purge's two orders instead, and `--flush-after 0,256kB`
the purge (in heap order) with each value of `backend_flush_after` in its batches instead of
the one it ships with (sessions/services.py PURGE_COMMIT_SETTINGS): what writing back its pages
as it goes costs the purge's backend (bench/README.md "Purge").
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import django_scratch_database  # noqa: E402

FILL = """
INSERT INTO tokens_session (id, user_id, client_id, scope, audience, user_agent, created_at,
    last_used_at, expires_at, idle_expires_at, ends_not_before, revoked_at, revoke_reason,
    rotations, refresh_digest)
SELECT gen_random_uuid(), %(user)s, 'authserver', '', 'api',
    'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
    now() - interval '80 days', now() - interval '75 days', now() - interval '50 days',
    now() - interval '40 days' - (g %% 86400) * interval '1 second',
    now() - interval '40 days' - (g %% 86400) * interval '1 second',
    NULL, '', 40, sha256(('a' || g)::bytea)
FROM generate_series(1, %(sessions)s) g
"""

# As a deployment lays them out (and bench/seed.py does): rows in the order of their end, each
# with its first idle deadline (ends_not_before) anywhere in the 30 days before it, so that the
# key order of the purge's index is not the table's order.
FILL_SCATTERED = """
INSERT INTO tokens_session (id, user_id, client_id, scope, audience, user_agent, created_at,
    last_used_at, expires_at, idle_expires_at, ends_not_before, revoked_at, revoke_reason,
    rotations, refresh_digest)
SELECT gen_random_uuid(), %(user)s, 'authserver', '', 'api',
    'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
    e - interval '30 days', e - interval '1 day', e + interval '1 day', e,
    e - random() * interval '29 days', NULL, '', 40, sha256(('a' || g)::bytea)
FROM (SELECT g, now() - interval '130 days' + g * (interval '90 days' / %(sessions)s) AS e
      FROM generate_series(1, %(sessions)s) g) t
"""

CONSTRAINTS = (
    ("tokens_session", "parent_id"),
    ("tokens_refreshtoken", "session_id"),
    ("oauth_authorizationcode", "session_id"),
    ("oauth_authorizationcode", "browser_session_id"),
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(sessions: int, batch_size: int, order: str = "auto", fill: str = FILL) -> dict:
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from sessions.services import sessions_purge

    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM accounts_user")
        user = cursor.fetchone()[0]
        cursor.execute(fill, {"user": user, "sessions": sessions})
        cursor.execute("ANALYZE tokens_session")
        cursor.execute("CHECKPOINT")
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    backend_before, ours_before = cpu_seconds(backend), time.process_time()
    started = time.monotonic()
    deleted, _ = sessions_purge(
        ended_before=timezone.now() - timedelta(days=30), batch_size=batch_size, order=order
    )
    wall = time.monotonic() - started
    backend_cpu = cpu_seconds(backend) - backend_before
    ours = time.process_time() - ours_before
    assert deleted == sessions, (deleted, sessions)  # noqa: S101 - a benchmark's sanity check
    return {
        "rows_per_second": sessions / wall,
        "database_us_per_row": backend_cpu / sessions * 1e6,
        "python_us_per_row": ours / sessions * 1e6,
        "rows_per_database_cpu_second": sessions / backend_cpu if backend_cpu else float("inf"),
    }


@contextlib.contextmanager
def backend_flush_after(value: str):
    """The purge's batches with `backend_flush_after = value` instead of the shipped setting."""
    from sessions import services

    shipped = services.PURGE_COMMIT_SETTINGS
    services.PURGE_COMMIT_SETTINGS = (
        *(s for s in shipped if "backend_flush_after" not in s),
        f"SET LOCAL backend_flush_after = '{value}'",
    )
    try:
        yield
    finally:
        services.PURGE_COMMIT_SETTINGS = shipped


def user_insert() -> int:
    """The one account the sessions belong to (written in SQL, no hash): its id."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (password, is_superuser, username, first_name, "
            "last_name, email, is_staff, is_active, date_joined, public_id) VALUES "
            "('!', false, 'purge', '', '', 'purge@example.com', false, true, now(), "
            "gen_random_uuid()) RETURNING id"
        )
        return cursor.fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument(
        "--orders",
        default="",
        help="instead of the constraints: compare these purge orders (comma-separated, "
        "alternating --repeat times) on sessions laid out as a deployment does (FILL_SCATTERED)",
    )
    parser.add_argument(
        "--flush-after",
        default="",
        help="instead of the constraints: compare these backend_flush_after values of the "
        "purge's batches (comma-separated, e.g. 0,256kB,2MB; alternating --repeat times)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    args.orders = [o for o in args.orders.split(",") if o]
    args.flush_after = [v for v in args.flush_after.split(",") if v]
    if any(not re.fullmatch(r"\d+(kB|MB)?", v) for v in args.flush_after):
        parser.error("--flush-after takes sizes such as 0,256kB,2MB")
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    with django_scratch_database(base, prefix="authserver_purge_cost"):
        from django.db import connection

        user_insert()
        # (label, order, setting) of each variant compared, alternating --repeat times.
        variants = [(f"order={o}", o, contextlib.nullcontext) for o in args.orders] + [
            (f"backend_flush_after={v}", "heap", functools.partial(backend_flush_after, v))
            for v in args.flush_after
        ]
        if variants:
            results = {}
            for i in range(args.repeat):
                for label, order, setting in variants:
                    with setting():
                        row = measure(args.sessions, args.batch_size, order, FILL_SCATTERED)
                    results[f"{label} #{i + 1}"] = row
                    print(label, row, file=sys.stderr, flush=True)
            return report(args, results)
        results = {"as shipped (no constraints)": measure(args.sessions, args.batch_size)}
        with connection.cursor() as cursor:
            for table, column in CONSTRAINTS:
                cursor.execute(
                    f"ALTER TABLE {table} ADD FOREIGN KEY ({column}) REFERENCES "
                    "tokens_session (id) DEFERRABLE INITIALLY DEFERRED"
                )
        results["with the four constraints"] = measure(args.sessions, args.batch_size)
        report(args, results)


def report(args, results: dict) -> None:
    print(f"purge of {args.sessions:,} ended sessions, batches of {args.batch_size:,}")
    print(f"{'':30} {'rows/s':>10} {'DB us/row':>10} {'py us/row':>10} {'rows/DB-cpu-s':>14}")
    for name, row in results.items():
        print(
            f"{name:30} {row['rows_per_second']:>10,.0f} {row['database_us_per_row']:>10.1f} "
            f"{row['python_us_per_row']:>10.1f} {row['rows_per_database_cpu_second']:>14,.0f}"
        )


if __name__ == "__main__":
    main()
