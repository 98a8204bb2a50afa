#!/usr/bin/env python3
"""Show PostgreSQL's plans for the session engine's hot queries at millions of rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/query_plans.py [--sessions N]

Creates (and afterwards drops) a scratch database, migrates it, fills it with N sessions (default
1,000,000, each holding its current refresh token's digest) using generate_series, and prints
EXPLAIN ANALYZE for: the refresh's read and conditional rotation (both by primary key), the
locked path's read, a user's session list, and the purge's two batch selections.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUERIES = {
    "refresh: the session named by the token, with its user": (
        "SELECT s.*, u.* FROM tokens_session s JOIN accounts_user u ON u.id = s.user_id "
        "WHERE s.id = %(sid)s"
    ),
    "refresh: the conditional rotation (a HOT update)": (
        "UPDATE tokens_session SET refresh_digest = %(new)s, rotations = rotations + 1, "
        "refresh_spent_at = now(), last_used_at = now(), idle_expires_at = now() "
        "WHERE id = %(sid)s AND refresh_digest = %(digest)s RETURNING rotations"
    ),
    "locked path: the session, locked": (
        "SELECT * FROM tokens_session WHERE id = %(sid)s FOR UPDATE"
    ),
    "session list of a user": (
        "SELECT * FROM tokens_session WHERE user_id = %(uid)s AND revoked_at IS NULL "
        "AND expires_at > now() AND idle_expires_at > now() ORDER BY last_used_at DESC"
    ),
    "purge: candidates ended by time (batch)": (
        "SELECT id, ends_not_before, idle_expires_at < now() - interval '30 days' "
        "FROM tokens_session WHERE ends_not_before >= '-infinity' "
        "AND ends_not_before < now() - interval '30 days' ORDER BY ends_not_before LIMIT 5000"
    ),
    "purge: revoked sessions (batch)": (
        "SELECT id, revoked_at FROM tokens_session WHERE revoked_at >= '-infinity' "
        "AND revoked_at < now() - interval '30 days' ORDER BY revoked_at LIMIT 5000"
    ),
}

FILL = """
INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email,
    is_staff, is_active, date_joined, public_id)
SELECT '!', false, 'plan' || g, '', '', 'plan' || g || '@example.com', false, true, now(),
    gen_random_uuid()
FROM generate_series(1, %(users)s) g;

INSERT INTO tokens_session (id, user_id, client_id, scope, audience, user_agent, created_at,
    last_used_at, expires_at, idle_expires_at, ends_not_before, revoked_at, revoke_reason,
    rotations, refresh_digest)
SELECT gen_random_uuid(), (SELECT min(id) FROM accounts_user) + (g %% %(users)s), 'authserver',
    '', 'api', 'bench', now() - age, now(),
    now() + interval '30 days' - age, now() + interval '7 days' - age,
    now() + interval '7 days' - age,
    CASE WHEN g %% 10 = 0 THEN now() - (g %% 45) * interval '1 day' END,
    CASE WHEN g %% 10 = 0 THEN 'logout' ELSE '' END, 1, sha256(('a' || g)::bytea)
FROM (
    -- A realistic mix: 95%% of sessions started in the last 6 days (live), 5%% are old ones
    -- (37-86 days: ended by time, purgeable); 10%% were logged out 0-44 days ago.
    SELECT g, CASE WHEN g %% 20 = 0 THEN (37 + g %% 50) ELSE g %% 7 END * interval '1 day' AS age
    FROM generate_series(1, %(sessions)s) g
) s;

ANALYZE;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    parts = urlsplit(base)
    scratch = "authserver_query_plans"
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path="/" + scratch))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")

    import psycopg

    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {scratch}")
        admin.execute(f"CREATE DATABASE {scratch}")
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from django.db import connection

        from sessions.services import PURGE_SCAN_SETTINGS

        started = time.monotonic()
        with connection.cursor() as cursor:
            users = max(args.sessions // 10, 1)
            for statement in filter(str.strip, FILL.split(";\n")):
                cursor.execute(statement, {"users": users, "sessions": args.sessions})
            print(
                f"filled {args.sessions:,} sessions, {users:,} users "
                f"in {time.monotonic() - started:.0f} s\n"
            )
            cursor.execute(
                "SELECT refresh_digest, id, user_id FROM tokens_session "
                "WHERE revoked_at IS NULL ORDER BY created_at DESC LIMIT 1"
            )
            digest, sid, uid = cursor.fetchone()
            params = {"digest": digest, "new": bytes(32), "sid": sid, "uid": uid}
            for title, sql in QUERIES.items():
                cursor.execute("BEGIN")
                if title.startswith("purge"):
                    for setting in PURGE_SCAN_SETTINGS:
                        cursor.execute(setting)
                cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) " + sql, params)
                plan = "\n".join("    " + row[0] for row in cursor.fetchall())
                cursor.execute("ROLLBACK")
                print(f"-- {title}\n{plan}\n")
        connection.close()
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")


if __name__ == "__main__":
    main()
