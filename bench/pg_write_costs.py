#!/usr/bin/env python3
"""What two schema choices on the refresh path cost PostgreSQL, in backend CPU per statement.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/pg_write_costs.py [--statements 20000] [--rounds 2]

In a scratch database (created, then dropped), with tables shaped like ours:

1. session touch: a refresh's UPDATE of a session's last_used_at / idle_expires_at / rotations,
   then the next refresh's lookup of it by id, over 32 hot sessions, with the index on
   idle_expires_at (what the purge uses; the UPDATE cannot be HOT) and without it (HOT);
2. audit insert: one audit event row with the seven secondary indexes of audit.AuthEvent, with
   three, and with none.

Backend CPU is utime + stime of the connection's PostgreSQL process from /proc (this host only),
divided by the statements. Commits are asynchronous here (`synchronous_commit = off`) so that
the WAL flush, the same in every variant, does not drown the difference. Variants alternate
over --rounds; the figures are per round.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch import database_url_required, scratch_database  # noqa: E402

SESSION_TABLE = """CREATE TABLE s_bench (
    id uuid PRIMARY KEY, user_id bigint, client_id varchar(100), scope varchar(1000),
    audience varchar(1000), user_agent varchar(512), ip inet, created_at timestamptz,
    last_used_at timestamptz, expires_at timestamptz, idle_expires_at timestamptz,
    revoked_at timestamptz, revoke_reason varchar(32), rotations integer)"""
SESSION_INDEXES = [
    "CREATE INDEX ON s_bench (user_id, created_at) WHERE revoked_at IS NULL",
    "CREATE INDEX ON s_bench (revoked_at) WHERE revoked_at IS NOT NULL",
]
AUDIT_TABLE = """CREATE TABLE a_bench (
    id bigserial PRIMARY KEY, event_type varchar(64), occurred_at timestamptz, user_id bigint,
    user_public_id uuid, client_id varchar(255), session_id uuid, ip inet,
    user_agent varchar(512), details jsonb)"""
AUDIT_INDEXES = [
    "(occurred_at DESC)",
    "(event_type, occurred_at DESC)",
    "(user_id, occurred_at DESC)",
    "(user_public_id, occurred_at DESC)",
    "(ip, occurred_at DESC)",
    "(client_id, occurred_at DESC)",
    "(session_id)",
]


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_touch(conn, pid: int, indexed: bool, statements: int) -> tuple[float, float]:
    conn.execute("DROP TABLE IF EXISTS s_bench")
    conn.execute(SESSION_TABLE)
    for sql in SESSION_INDEXES:
        conn.execute(sql)
    if indexed:
        conn.execute("CREATE INDEX ON s_bench (idle_expires_at)")
    now = dt.datetime.now(dt.UTC)
    ids = [uuid.uuid4() for _ in range(32)]
    for sid in ids:
        conn.execute(
            "INSERT INTO s_bench VALUES "
            "(%s, 1, '', '', 'a', 'ua', NULL, %s, %s, %s, %s, NULL, '', 0)",
            (sid, now, now, now, now),
        )
    start = backend_cpu(pid)
    for k in range(statements):
        sid, moment = ids[k % len(ids)], now + dt.timedelta(seconds=k)
        conn.execute(
            "UPDATE s_bench SET last_used_at = %s, idle_expires_at = %s, rotations = %s "
            "WHERE id = %s",
            (moment, moment, k, sid),
        )
        conn.execute("SELECT rotations FROM s_bench WHERE id = %s", (sid,))
    cpu = backend_cpu(pid) - start
    updated, hot = conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 's_bench'"
    ).fetchone()
    return 1000 * cpu / statements, (hot / updated if updated else 0.0)


def audit_insert(conn, pid: int, indexes: int, statements: int) -> float:
    conn.execute("DROP TABLE IF EXISTS a_bench")
    conn.execute(AUDIT_TABLE)
    for columns in AUDIT_INDEXES[:indexes]:
        conn.execute(f"CREATE INDEX ON a_bench {columns}")
    now = dt.datetime.now(dt.UTC)
    users = [(k, uuid.uuid4(), uuid.uuid4()) for k in range(32)]
    start = backend_cpu(pid)
    for k in range(statements):
        user_id, sub, sid = users[k % len(users)]
        conn.execute(
            "INSERT INTO a_bench (event_type, occurred_at, user_id, user_public_id, client_id, "
            "session_id, ip, user_agent, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING id",
            (
                "token.refreshed",
                now + dt.timedelta(microseconds=100 * k),
                user_id,
                sub,
                "authserver",
                sid,
                "127.0.0.1",
                "bench/1.0",
                json.dumps({"rotation": k, "grace": False}),
            ),
        )
    return 1000 * (backend_cpu(pid) - start) / statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import psycopg

    with (
        scratch_database(database_url_required(), prefix="authserver_pgcost") as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        pid = conn.info.backend_pid
        if not Path(f"/proc/{pid}/stat").exists():
            sys.exit("bench: the PostgreSQL backend is not visible in /proc (another host?)")
        conn.execute("SET synchronous_commit = off")
        print(f"backend CPU per operation (ms), {args.statements} operations per figure")
        for round_number in range(1, args.rounds + 1):
            for indexed in (True, False):
                ms, hot = session_touch(conn, pid, indexed, args.statements)
                label = "with idle_expires_at index" if indexed else "without (HOT)"
                print(
                    f"  round {round_number} session touch + lookup, {label:<27} "
                    f"{ms:.4f} ms  (HOT updates {hot:.0%})"
                )
            for indexes in (7, 3, 0):
                ms = audit_insert(conn, pid, indexes, args.statements)
                print(
                    f"  round {round_number} audit insert, {indexes} secondary indexes"
                    f"{'':<12} {ms:.4f} ms"
                )


if __name__ == "__main__":
    main()
