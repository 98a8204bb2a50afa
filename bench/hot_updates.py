#!/usr/bin/env python3
"""Do refreshes keep the session row on its page (HOT updates), and what takes that away?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/hot_updates.py [--fillfactor 80] [--workers 4] [--hold 0.5]

Creates (and afterwards drops) a scratch database, migrates it, fills tokens_session with older
sessions (COPY, then VACUUM, as bench/seed.py leaves it) and then --sessions new ones, inserted
one at a time as sign-ins write them. Then --workers processes refresh those sessions in turn
with the rotation's two statements (the read of the session and its user, the conditional
UPDATE of sessions/services.py), each process taking every --workers-th session as
bench/scale.py's round robin does. It prints the share of HOT updates (the row version stays on
its page, no index entry) and what the table and its indexes grew by.

`--hold S --period P`: every P seconds, a transaction in another database of the server (the
one DATABASE_URL names) takes a transaction id and keeps it open S seconds, writing nothing.
PostgreSQL prunes no row version newer than the oldest transaction id running in the cluster,
so while it is open the pages fill up and refreshes move rows (bench/README.md "Scale").
Run it on a server nothing else uses: other work on the server is a --hold of its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import database_url_required, scratch_database  # noqa: E402

COLUMNS = (
    "id, client_id, scope, audience, user_agent, ip, created_at, last_used_at, expires_at, "
    "idle_expires_at, revoke_reason, rotations, user_id, refresh_digest, ends_not_before, amr"
)
OLDER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SIGN_IN = (
    f"INSERT INTO tokens_session ({COLUMNS}) VALUES (%s, 'authserver', '', 'authserver', "  # noqa: S608
    "'scale-bench sign-in', '198.51.100.23', now(), now(), now() + interval '30 days', "
    "now() + interval '14 days', '', 0, %s, %s, now() + interval '14 days', 'pwd')"
)
READ = (
    "SELECT s.*, u.id, u.public_id, u.is_active, u.password_changed_at FROM tokens_session s "
    "JOIN accounts_user u ON u.id = s.user_id WHERE s.id = %s"
)
ROTATE = (
    "UPDATE tokens_session SET refresh_digest = %s, rotations = %s, refresh_spent_at = now(), "
    "last_used_at = now(), idle_expires_at = now() + interval '14 days' WHERE id = %s "
    "AND refresh_digest = %s RETURNING rotations"
)
SIZES = (
    "SELECT n_tup_upd, n_tup_hot_upd, pg_total_relation_size('tokens_session') "
    "FROM pg_stat_user_tables WHERE relname = 'tokens_session'"
)


def fill(url: str, args: argparse.Namespace) -> tuple[list[tuple[uuid.UUID, bytes]], float]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE tokens_session SET (fillfactor = {int(args.fillfactor)})")
        user = conn.execute(
            "INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, "
            "email, is_staff, is_active, date_joined, public_id) VALUES ('!', false, 'hot', '', "
            "'', 'hot@example.com', false, true, now(), gen_random_uuid()) RETURNING id"
        ).fetchone()[0]
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY tokens_session ({COLUMNS}) FROM STDIN") as copy,
        ):
            for _ in range(args.older):
                copy.write_row(
                    (uuid.uuid4(), "authserver", "", "authserver", OLDER_AGENT, "203.0.113.9",
                     "2026-11-01", "2026-11-01", "2026-12-01", "2026-11-15", "", 3, user,
                     os.urandom(32), "2026-11-15", "pwd")
                )  # fmt: skip
        conn.execute("VACUUM ANALYZE tokens_session")
        before = conn.execute(SIZES).fetchone()[2]
        sessions = []
        for _ in range(args.sessions):
            sid, digest = uuid.uuid4(), os.urandom(32)
            conn.execute(SIGN_IN, (sid, user, digest))
            sessions.append((sid, digest))
        after = conn.execute(SIZES).fetchone()[2]
    return sessions, (after - before) / args.sessions


def refresher(url: str, share: list, count: int) -> None:
    import psycopg

    digests = dict(share)
    generations = dict.fromkeys(digests, 0)
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(count):
            sid = share[n % len(share)][0]
            conn.execute(READ, (sid,)).fetchone()
            new = os.urandom(32)
            if conn.execute(ROTATE, (new, generations[sid] + 1, sid, digests[sid])).fetchone():
                digests[sid], generations[sid] = new, generations[sid] + 1


def holder(base_url: str, hold: float, period: float, stop: threading.Event) -> None:
    """Every `period` s, a transaction in the server's other database that holds a transaction
    id for `hold` s (txid_current() assigns one; nothing is written)."""
    import psycopg

    with psycopg.connect(base_url) as conn:
        while not stop.wait(period - hold):
            conn.execute("SELECT txid_current()")
            stop.wait(hold)
            conn.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fillfactor", type=int, default=80)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--refreshes", type=int, default=60_000)
    parser.add_argument("--older", type=int, default=50_000, help="sessions there before")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds (0: none)")
    parser.add_argument("--period", type=float, default=10.0)
    args = parser.parse_args()
    if not 10 <= args.fillfactor <= 100 or args.hold < 0 or args.hold >= args.period:
        parser.error("--fillfactor must be 10-100, --hold 0 or more and less than --period")
    base = database_url_required()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
    with scratch_database(base, "authserver_hot_updates") as url:
        os.environ["DATABASE_URL"] = url
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from django.db import connections

        connections.close_all()
        import psycopg

        sessions, created = fill(url, args)
        shares = [sessions[i :: args.workers] for i in range(args.workers)]
        time.sleep(1.5)  # statistics reach pg_stat_user_tables
        with psycopg.connect(url, autocommit=True) as conn:
            before = conn.execute(SIZES).fetchone()
            stop = threading.Event()
            holding = threading.Thread(target=holder, args=(base, args.hold, args.period, stop))
            if args.hold:
                holding.start()
            context = multiprocessing.get_context("spawn")
            procs = [
                context.Process(target=refresher, args=(url, share, args.refreshes // args.workers))
                for share in shares
            ]
            started = time.monotonic()
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join()
            elapsed = time.monotonic() - started
            stop.set()
            if args.hold:
                holding.join()
            time.sleep(11)  # an idle backend reports its counts up to 10 s late
            after = conn.execute(SIZES).fetchone()
    updates, hot = after[0] - before[0], after[1] - before[1]
    grown = after[2] - before[2]
    held = f"hold {args.hold:g} s every {args.period:g} s" if args.hold else "no hold"
    print(
        f"fillfactor {args.fillfactor}, {args.workers} workers, {held}: {created:.0f} B per "
        f"session at sign-in; {updates:,} refreshes in "
        f"{elapsed:.0f} s, HOT {hot / updates:.2%} ({updates - hot:,} not); tables and indexes "
        f"grew {grown / 1e6:.2f} MB ({grown / args.sessions:.0f} B per session, "
        f"{grown / updates:.2f} MB per million refreshes)"
    )


if __name__ == "__main__":
    main()
