#!/usr/bin/env python3
"""Show PostgreSQL's plans for the session engine's hot queries at millions of rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        .venv/bin/python bench/query_plans.py [--sessions N]

Creates (and afterwards drops) a scratch database, migrates it, fills it with N sessions (default
1,000,000) of two refresh tokens each using generate_series, and prints EXPLAIN ANALYZE for:
the refresh lookup (by token digest, FOR UPDATE), the live-token lookup of a session, a user's
session list, and the purge selection.
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
    "refresh: token by digest, locked": (
        "SELECT t.*, s.* FROM tokens_refreshtoken t JOIN tokens_session s ON s.id = t.session_id "
        "WHERE t.token_hash = %(hash)s FOR UPDATE OF t, s"
    ),
    "grace: live token of a session": (
        "SELECT id FROM tokens_refreshtoken WHERE session_id = %(sid)s "
        "AND consumed_at IS NULL AND revoked_at IS NULL"
    ),
    "session list of a user": (
        "SELECT * FROM tokens_session WHERE user_id = %(uid)s AND revoked_at IS NULL "
        "AND expires_at > now() AND idle_expires_at > now() ORDER BY last_used_at DESC"
    ),
    "purge: ended sessions (batch)": (
        "SELECT id FROM tokens_session WHERE revoked_at < now() - interval '30 days' "
        "OR idle_expires_at < now() - interval '30 days' LIMIT 5000"
    ),
    "purge: tokens of a batch": (
        "SELECT count(*) FROM tokens_refreshtoken WHERE session_id IN "
        "(SELECT id FROM tokens_session WHERE revoked_at < now() - interval '30 days' LIMIT 5000)"
    ),
}

FILL = """
INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email,
    is_staff, is_active, date_joined, public_id)
SELECT '!', false, 'plan' || g, '', '', 'plan' || g || '@example.com', false, true, now(),
    gen_random_uuid()
FROM generate_series(1, %(users)s) g;

INSERT INTO tokens_session (id, user_id, client_id, scope, audience, user_agent, created_at,
    last_used_at, expires_at, idle_expires_at, revoked_at, revoke_reason, rotations)
SELECT gen_random_uuid(), (SELECT min(id) FROM accounts_user) + (g %% %(users)s), 'authserver',
    '', 'api', 'bench', now() - age, now(),
    now() + interval '30 days' - age, now() + interval '7 days' - age,
    CASE WHEN g %% 10 = 0 THEN now() - (g %% 45) * interval '1 day' END,
    CASE WHEN g %% 10 = 0 THEN 'logout' ELSE '' END, 1
FROM (
    -- A realistic mix: 95%% of sessions started in the last 6 days (live), 5%% are old ones
    -- (37-86 days: ended by time, purgeable); 10%% were logged out 0-44 days ago.
    SELECT g, CASE WHEN g %% 20 = 0 THEN (37 + g %% 50) ELSE g %% 7 END * interval '1 day' AS age
    FROM generate_series(1, %(sessions)s) g
) s;

INSERT INTO tokens_refreshtoken (session_id, parent_id, token_hash, created_at, expires_at,
    consumed_at, revoked_at)
SELECT id, NULL, sha256(('a' || id::text)::bytea), now(), now() + interval '7 days',
    now(), NULL FROM tokens_session;

INSERT INTO tokens_refreshtoken (session_id, parent_id, token_hash, created_at, expires_at,
    consumed_at, revoked_at)
SELECT t.session_id, t.id, sha256(('b' || t.session_id::text)::bytea), now(),
    now() + interval '7 days', NULL, NULL FROM tokens_refreshtoken t;

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

        started = time.monotonic()
        with connection.cursor() as cursor:
            users = max(args.sessions // 10, 1)
            cursor.execute(FILL, {"users": users, "sessions": args.sessions})
            cursor.execute("SELECT count(*) FROM tokens_refreshtoken")
            tokens = cursor.fetchone()[0]
            print(
                f"filled {args.sessions:,} sessions, {tokens:,} refresh tokens, {users:,} users "
                f"in {time.monotonic() - started:.0f} s\n"
            )
            cursor.execute(
                "SELECT token_hash, session_id, (SELECT user_id FROM tokens_session s "
                "WHERE s.id = session_id) FROM tokens_refreshtoken ORDER BY id DESC LIMIT 1"
            )
            digest, sid, uid = cursor.fetchone()
            params = {"hash": digest, "sid": sid, "uid": uid}
            for title, sql in QUERIES.items():
                cursor.execute("BEGIN")
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
