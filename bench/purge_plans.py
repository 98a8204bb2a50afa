#!/usr/bin/env python3
"""EXPLAIN (ANALYZE, BUFFERS, WAL) of one purge batch in each order (bench/README.md "Purge").

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/purge_plans.py [--sessions 2000000]

Creates (and afterwards drops) a scratch database, fills it with ended sessions laid out as a
deployment lays them out (bench/purge_cost.py FILL_SCATTERED), and explains one batch of the
purge's statement (sessions/services.py `_purge_sql`) in key order (the `ends_not_before`
index) and in physical order (a range of pages), each just after a CHECKPOINT and rolled back,
twice: pages read and dirtied, full-page images and bytes of WAL per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.purge_cost import FILL_SCATTERED, user_insert  # noqa: E402
from bench.scratch import django_scratch_database  # noqa: E402

SHOWN = (
    "Shared Read Blocks",
    "Shared Dirtied Blocks",
    "Shared Written Blocks",
    "WAL Records",
    "WAL FPI",
    "WAL Bytes",
)


def explain(mode: str, params: dict) -> dict:
    from django.db import connection, transaction

    from sessions.services import PURGE_SCAN_SETTINGS, _purge_sql

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    with transaction.atomic(), connection.cursor() as cursor:
        if mode != "heap":
            for setting in PURGE_SCAN_SETTINGS:
                cursor.execute(setting)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + _purge_sql(mode), params)
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)
    if isinstance(plan, str):
        plan = json.loads(plan)
    row = {name: plan[0]["Plan"].get(name) for name in SHOWN}
    row["ms"] = round(plan[0]["Execution Time"], 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2_000_000)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    with django_scratch_database(base, prefix="authserver_purge_plans"):
        from django.db import connection
        from django.utils import timezone

        user = user_insert()
        with connection.cursor() as cursor:
            cursor.execute(FILL_SCATTERED, {"user": user, "sessions": args.sessions})
            cursor.execute("VACUUM ANALYZE tokens_session")
            cursor.execute("SELECT relpages FROM pg_class WHERE relname = 'tokens_session'")
            pages = cursor.fetchone()[0]
        cutoff = timezone.now() - timedelta(days=30)
        # A batch from the middle of each order, of about 5,000 sessions.
        per_page = args.sessions / pages
        first = pages // 4
        params = {
            "cutoff": cutoff,
            "after": cutoff - timedelta(days=60),
            "size": 5000,
            "first": f"({first},0)",
            "end": f"({first + round(5000 / per_page)},0)",
        }
        print(f"{args.sessions:,} sessions on {pages:,} pages; one batch, after a CHECKPOINT:")
        for mode in ("ends_not_before", "heap", "ends_not_before", "heap"):
            name = "index (key) order" if mode != "heap" else "heap (physical) order"
            print(f"{name:22}", explain(mode, params), flush=True)


if __name__ == "__main__":
    main()
