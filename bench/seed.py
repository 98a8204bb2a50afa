"""Seeding a scale-benchmark database with COPY (bench/scale.py).

What goes in each column comes from the Django models themselves (`_meta.concrete_fields`):
every table has generators for the columns that shape the benchmark (who, when, which client,
which device), keyed by column name, and every other column gets its field's default, or NULL
when it is nullable. A column a migration adds therefore needs no change here, unless it is NOT
NULL without a default: then seeding stops and names it.

Rows are made a chunk at a time, column by column, as COPY text (no model instances, no
per-row round trips). The secondary indexes that back no constraint are dropped before the load
and re-created from their own definitions afterwards, and the final set of indexes is compared
with the one migrate made. Everything here runs in a process where Django is set up on the
database being seeded (bench/scale_agent.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache

DAY = 86400.0
NULL = r"\N"
CHUNK_ROWS = 20_000

# Devices as their browsers and apps name themselves (sessions and audit rows draw from these).
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70",
    "ExampleApp/4.12.1 (iPhone; iOS 18.1; Scale/3.00)",
    "ExampleApp/4.12.0 (Android 14; SM-S921B)",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "",
)
# A session's kind decides its client, scope and audience (sessions/models.py).
SESSION_KINDS = ("first_party", "oauth", "browser")
SESSION_KIND_WEIGHTS = (60, 25, 15)
REVOKE_REASONS = ("logout", "logout", "logout", "logout_all", "user_ended", "password_changed")
OAUTH_SCOPE = "openid profile email offline_access"
# Audit events of a year, by type: sign-ins and their failures, OAuth issuance, logouts, the
# rarer security events. Refreshes are left out: issue 15.2 stops auditing routine ones.
AUDIT_MIX = (
    ("login.succeeded", 40, '{"method": "password"}'),
    ("login.failed", 14, '{"reason": "bad_credentials"}'),
    ("login.throttled", 1, '{"scope": "ip", "retry_after": 120}'),
    ("oauth.code_issued", 12, '{"scope": "openid profile email offline_access"}'),
    ("oauth.token_issued", 12, '{"scope": "openid profile email offline_access", "refresh": true}'),
    ("logout", 9, "{}"),
    ("session.revoked", 3, '{"reason": "user_ended"}'),
    ("client.auth_failed", 3, '{"method": "client_secret_basic"}'),
    ("consent.granted", 3, '{"scope": "openid profile email"}'),
    ("password.changed", 1, "{}"),
    ("account.locked", 1, '{"seconds": 60}'),
    ("token.reuse_detected", 1, "{}"),
)
USER_LESS_EVENTS = frozenset({"client.auth_failed", "login.throttled"})
SESSION_EVENTS = frozenset({"oauth.token_issued", "logout", "session.revoked"})


class SeedError(Exception):
    """Seeding cannot go on; the message is one line (bench/scale.py prints it as is)."""


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@dataclass(frozen=True)
class Sizes:
    """Row counts of one benchmark database. `retained_sessions` ended within the retention
    period (the purge keeps them); `ended_sessions` ended before it (the purge deletes them)."""

    users: int
    live_sessions: int
    ended_sessions: int
    retained_sessions: int
    audit_events: int

    def scaled(self, factor: float) -> Sizes:
        return Sizes(**{k: max(1, round(v * factor)) for k, v in asdict(self).items()})

    def estimated_bytes(self) -> int:
        """Disk a seeded database takes, tables and indexes: a 10% run measured 471, 345 and
        475 bytes per user, session and audit event; these leave room for growth."""
        sessions = self.live_sessions + self.ended_sessions + self.retained_sessions
        return int(self.users * 550 + sessions * 450 + self.audit_events * 550)


FULL = Sizes(
    users=1_000_000,
    live_sessions=1_000_000,
    ended_sessions=10_000_000,
    retained_sessions=1_000_000,
    audit_events=50_000_000,
)


@dataclass(frozen=True)
class World:
    """What the generators need to know about the deployment being imitated."""

    now: float  # epoch seconds; every seeded time is relative to it
    users: int
    password_hash: str
    oauth_client_ids: tuple[str, ...]
    default_audience: str
    session_max_age: float
    idle_timeout: float
    retention_days: int
    audit_days: int = 364


# --- COPY text ---------------------------------------------------------------------------------


_COPY_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"))


def copy_escape(text: str) -> str:
    """A value in COPY's text format (backslash, tab, newline and carriage return escaped)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        for raw, escaped in _COPY_ESCAPES:
            text = text.replace(raw, escaped)
    return text


def copy_value(value: object) -> str:
    """A Python value (a field default) as COPY text."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return copy_escape(json.dumps(value))
    return copy_escape(str(value))


@lru_cache(maxsize=1 << 18)
def _minute_text(minute: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(minute * 60))


def ts(epoch: float) -> str:
    """Epoch seconds as timestamptz text (UTC), without a datetime object per value."""
    seconds = int(epoch)
    minute, second = divmod(seconds, 60)
    return f"{_minute_text(minute)}:{second:02d}.{int((epoch - seconds) * 1e6):06d}+00"


def uuid_texts(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


def digest_texts(rng: random.Random, n: int) -> list[str]:
    """Random 32-byte bytea values (SHA-256 digests), as COPY text."""
    return [f"\\\\x{rng.getrandbits(256):064x}" for _ in range(n)]


def ip_pool(rng: random.Random, size: int = 50_000) -> list[str]:
    """Client addresses: mostly IPv4, some IPv6 (a /64 per household)."""
    pool = [
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(size * 4 // 5)
    ]
    pool += [
        f"2001:db8:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::{rng.getrandbits(16):x}"
        for _ in range(size - len(pool))
    ]
    return pool


# A unique, random-looking `public_id` per user id, without storing a million of them: an odd
# multiplier is a bijection modulo 2**128, and so is the XOR with the run's salt.
_MULTIPLIER = 0x9E3779B97F4A7C15F39CC0605CEDC835
_MASK = (1 << 128) - 1


def public_id(user_id: int, salt: int) -> str:
    return f"{((user_id * _MULTIPLIER) & _MASK) ^ salt:032x}"


# --- Generators, one per table ----------------------------------------------------------------

Columns = dict[str, Sequence[str] | Iterable[str]]


def user_columns(world: World, salt: int, rng: random.Random, start: int, n: int) -> Columns:
    """Users 1..N, named user00000001...; every one with the same password hash."""
    ids = range(start + 1, start + n + 1)
    names = [f"user{i:08d}" for i in ids]
    joined = [ts(world.now - rng.uniform(30 * DAY, 3 * 365 * DAY)) for _ in ids]
    last = [ts(world.now - rng.uniform(0, 30 * DAY)) for _ in ids]
    return {
        "id": [str(i) for i in ids],
        "username": names,
        "email": [f"{name}@scale.invalid" for name in names],
        "password": itertools.repeat(copy_escape(world.password_hash), n),
        "public_id": [public_id(i, salt) for i in ids],
        "date_joined": joined,
        "last_login": last,
        "is_active": itertools.repeat("t", n),
    }


def session_columns(
    world: World,
    state: str,
    ips: list[str],
    rng: random.Random,
    start: int,
    n: int,
    total: int,
) -> Columns:
    """Rows `start`..`start + n` of `total` sessions in `state`: "live" (in use now), "ended"
    (ended before the retention period: purge_expired_sessions deletes them), "retained" (ended
    within it). A third of the ended ones were revoked (logout and the like), the rest ran out
    of time. Rows come in time order (live ones by start, ended ones by end, which follows the
    start within the 30-day lifetime), as a deployment appends them to the table: what is
    near in time is near on disk, which the purge's index range scans depend on."""
    rand = rng.random
    idle, max_age, now = world.idle_timeout, world.session_max_age, world.now
    retention = world.retention_days * DAY
    created_at, last_used_at, expires_at, idle_at, revoked_at, reasons, rotations, ends = (
        [] for _ in range(8)
    )
    for i in range(n):
        later = (start + i + rand()) / total  # 0 to 1: this row's place in time
        revoked = None
        if state == "live":
            created = now - (1 - later) * (max_age - 60)
            last_used = now - rand() * min(idle - 60, now - created)
        else:
            if state == "ended":  # one hour to 90 days before the purge's cutoff
                end = now - retention - 3600 - (1 - later) * 90 * DAY
            else:
                end = now - 3600 - (1 - later) * (retention - 7200)
            if rand() < 1 / 3:
                revoked = end
                last_used = end - rand() * DAY
                created = last_used - rand() * (max_age - idle - DAY)
            else:  # the idle deadline passed at `end`
                last_used = end - idle
                created = last_used - rand() * (max_age - idle)
        expires = created + max_age
        created_at.append(ts(created))
        last_used_at.append(ts(last_used))
        expires_at.append(ts(expires))
        idle_at.append(ts(min(expires, last_used + idle)))
        revoked_at.append(NULL if revoked is None else ts(revoked))
        reasons.append("" if revoked is None else REVOKE_REASONS[int(rand() * 6)])
        # About one refresh per ten minutes of use.
        rotations.append(str(int((last_used - created) / 600 * rand())))
        ends.append(ts(min(expires, created + idle)))
    kinds = rng.choices(SESSION_KINDS, weights=SESSION_KIND_WEIGHTS, k=n)
    clients = rng.choices(world.oauth_client_ids, k=n)
    client_ids = [
        "authserver" if k == "first_party" else c if k == "oauth" else ""
        for k, c in zip(kinds, clients, strict=True)
    ]
    audience = world.default_audience
    digests = digest_texts(rng, n)
    return {
        "id": uuid_texts(rng, n),
        "user_id": [str(int(rand() * world.users) + 1) for _ in range(n)],
        "client_id": client_ids,
        "scope": [OAUTH_SCOPE if k == "oauth" else "" for k in kinds],
        "audience": [
            audience if k == "first_party" else c for k, c in zip(kinds, client_ids, strict=True)
        ],
        "user_agent": rng.choices(USER_AGENTS, k=n),
        "ip": rng.choices(ips, k=n),
        "created_at": created_at,
        "last_used_at": last_used_at,
        "expires_at": expires_at,
        "idle_expires_at": idle_at,
        "revoked_at": revoked_at,
        "revoke_reason": reasons,
        "rotations": rotations,
        # Sessions that hold a refresh token (not browser sign-ins): the digest of the current
        # one (issue 15.1's session row).
        "refresh_digest": [
            NULL if k == "browser" else d for k, d in zip(kinds, digests, strict=True)
        ],
        # The session's end by time as known at its start (issue 15.1): the first idle deadline.
        "ends_not_before": ends,
    }


def audit_columns(
    world: World, salt: int, ips: list[str], rng: random.Random, start: int, n: int, total: int
) -> Columns:
    """Rows `start`..`start + n` of `total` events spread evenly over the last `audit_days`,
    in time order (as they were written)."""
    rand = rng.random
    span = world.audit_days * DAY
    first = world.now - span
    step = span / total
    names = [name for name, _, _ in AUDIT_MIX]
    details = {name: copy_escape(text) for name, _, text in AUDIT_MIX}
    events = rng.choices(names, weights=[weight for _, weight, _ in AUDIT_MIX], k=n)
    users = [
        None if event in USER_LESS_EVENTS else int(rand() * world.users) + 1 for event in events
    ]
    clients = rng.choices(world.oauth_client_ids, k=n)
    oauth_events = {name for name in names if name.startswith(("oauth.", "client.", "consent."))}
    return {
        "event_type": events,
        "occurred_at": [ts(first + (start + i + rand()) * step) for i in range(n)],
        "user_id": [NULL if u is None else str(u) for u in users],
        "user_public_id": [NULL if u is None else public_id(u, salt) for u in users],
        "client_id": [c if e in oauth_events else "" for e, c in zip(events, clients, strict=True)],
        "session_id": [
            f"{rng.getrandbits(128):032x}" if e in SESSION_EVENTS else NULL for e in events
        ],
        "ip": rng.choices(ips, k=n),
        "user_agent": rng.choices(USER_AGENTS, k=n),
        "details": [details[e] for e in events],
    }


# --- COPY --------------------------------------------------------------------------------------


def copy_plan(model, produced: Iterable[str]) -> list[tuple[str, str | None]]:
    """(column, constant) for each column to COPY: constant None means the generator supplies
    it. Auto-increment keys without a generator are left to the database."""
    from django.db import models

    produced = set(produced)
    plan = []
    for field in model._meta.concrete_fields:
        if field.attname in produced:
            plan.append((field.column, None))
        elif isinstance(field, models.AutoField | models.BigAutoField | models.SmallAutoField):
            continue
        elif field.null:
            plan.append((field.column, NULL))
        elif field.has_default() or field.empty_strings_allowed:  # text fields: ""
            plan.append((field.column, copy_value(_db_default(field))))
        else:
            raise SeedError(
                f"{model._meta.db_table}.{field.column} is NOT NULL without a default and "
                "bench/seed.py has no generator for it"
            )
    return plan


def _db_default(field) -> object:
    from django.db import models

    value = field.get_default()
    if isinstance(field, models.JSONField):
        return json.dumps(value)
    return value


def chunk_text(plan: list[tuple[str, str | None]], columns: Columns, attnames: dict, n: int) -> str:
    streams = [
        columns[attnames[column]] if constant is None else itertools.repeat(constant, n)
        for column, constant in plan
    ]
    return "\n".join(map("\t".join, zip(*streams, strict=False))) + "\n"


Generator = Callable[[random.Random, int, int], Columns]


def copy_rows(conn, model, rows: int, generate: Generator, seed: int) -> None:
    """COPY `rows` rows into the model's table, `generate(rng, start, n)` giving the columns of
    each chunk. One transaction: a failed seed leaves the table as it was."""
    from psycopg import sql

    if rows <= 0:
        return
    rng = random.Random(seed)
    attnames = {f.column: f.attname for f in model._meta.concrete_fields}
    first = generate(rng, 0, min(CHUNK_ROWS, rows))
    plan = copy_plan(model, first.keys())
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(model._meta.db_table),
        sql.SQL(", ").join(sql.Identifier(column) for column, _ in plan),
    )
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
        columns, start = first, 0
        while True:
            n = min(CHUNK_ROWS, rows - start)
            copy.write(chunk_text(plan, columns, attnames, n))
            start += n
            if start >= rows:
                break
            columns = generate(rng, start, min(CHUNK_ROWS, rows - start))


# --- Indexes around the load -------------------------------------------------------------------


def schema_indexes(conn) -> list[tuple[str, str, str]]:
    """(table, index, definition) of every index in the schema: compared before and after."""
    return conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() ORDER BY 1, 2"
    ).fetchall()


def droppable_indexes(conn, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the table's own indexes that back no constraint (primary keys and
    unique constraints stay; foreign keys point at them), in the order they were made: an index
    on a partitioned table makes one per partition, named after the partition and the columns,
    and re-creating them in the same order gives every one its old name."""
    return conn.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "
        "ORDER BY x.indexrelid",
        [table],
    ).fetchall()


def indexes_drop(conn, table: str) -> list[tuple[str, str]]:
    from psycopg import sql

    dropped = droppable_indexes(conn, table)
    for name, _definition in dropped:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return dropped


def indexes_create(conn, dropped: list[tuple[str, str]]) -> None:
    for _name, definition in dropped:
        # An index of a partitioned table made ON ONLY the parent had its partitions' indexes
        # attached one by one; without ONLY, PostgreSQL makes (and names) them all in one go.
        conn.execute(definition.replace(" ON ONLY ", " ON ", 1))


# --- The whole database -----------------------------------------------------------------------


@dataclass
class TableSeed:
    table: str
    rows: int
    copy_seconds: float
    index_seconds: float


def _elapsed(started: float) -> float:
    return round(time.monotonic() - started, 1)


def seed_database(url: str, sizes: Sizes, world: World, seed: int = 15) -> dict:
    """COPY users, sessions (live, ended, retained) and audit events into the migrated database
    at `url`; returns what was done and how long each step took. Raises SeedError."""
    import psycopg
    from django.db import connection

    from accounts.models import User
    from audit.models import AuthEvent
    from sessions.models import Session

    if connection.settings_dict["NAME"] != url.rsplit("/", 1)[-1]:
        # The models' own code (audit partitions) runs on Django's connection: it must be this.
        raise SeedError("seed_database runs where Django is set up on the database it seeds")
    salt = random.Random(seed).getrandbits(128)
    ips = ip_pool(random.Random(seed + 1))
    report: dict = {"tables": [], "foreign_key_checks": "on"}
    started = time.monotonic()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute("SET synchronous_commit = off")
            try:  # Superusers may skip the foreign-key triggers: the generators keep them valid.
                conn.execute("SET session_replication_role = replica")
                report["foreign_key_checks"] = "skipped (session_replication_role = replica)"
            except psycopg.errors.InsufficientPrivilege:
                pass
            report["audit_partitions_created"] = audit_partitions_prepare(conn, world)
            before = schema_indexes(conn)
            plans = _plans(world, sizes, salt, ips)
            for model in (User, Session, AuthEvent):
                table_started = time.monotonic()
                dropped = indexes_drop(conn, model._meta.db_table)
                rows = 0
                for number, (planned, count, generate) in enumerate(plans):
                    if planned is model:
                        copy_rows(conn, model, count, generate, seed + 10 + number)
                        rows += count
                copy_seconds = _elapsed(table_started)
                _progress(f"{model._meta.db_table}: {rows:,} rows in {copy_seconds:.0f} s")
                index_started = time.monotonic()
                indexes_create(conn, dropped)
                index_seconds = _elapsed(index_started)
                _progress(
                    f"{model._meta.db_table}: {len(dropped)} indexes in {index_seconds:.0f} s"
                )
                report["tables"].append(
                    asdict(TableSeed(model._meta.db_table, rows, copy_seconds, index_seconds))
                )
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('accounts_user', 'id'), "
                "(SELECT max(id) FROM accounts_user))"
            )
            after = schema_indexes(conn)
            if after != before:
                raise SeedError(
                    "the indexes after seeding differ from migrate's: "
                    f"{sorted(set(before) ^ set(after))[:3]}"
                )
            report["indexes_checked"] = len(after)
            vacuum_started = time.monotonic()
            conn.execute("SET session_replication_role = DEFAULT")
            for model in (User, Session, AuthEvent):
                conn.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
            conn.execute("ANALYZE")
            report["vacuum_analyze_seconds"] = _elapsed(vacuum_started)
            # Write the load out now rather than during the measurements (superusers only).
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")
    except psycopg.Error as exc:
        raise SeedError(one_line(exc)) from None
    report["seconds"] = _elapsed(started)
    return report


def _plans(world: World, sizes: Sizes, salt: int, ips: list[str]) -> list:
    """(model, rows, generator) in the order a deployment would have written the rows: users,
    sessions by start (the ended ones began before the live ones), audit events by time. The
    heap order matters to the plans PostgreSQL picks (a LIMIT over a sequential scan)."""
    from accounts.models import User
    from audit.models import AuthEvent
    from sessions.models import Session

    def sessions(state: str, total: int) -> Generator:
        return lambda rng, start, n: session_columns(world, state, ips, rng, start, n, total)

    return [
        (User, sizes.users, lambda rng, start, n: user_columns(world, salt, rng, start, n)),
        (Session, sizes.ended_sessions, sessions("ended", sizes.ended_sessions)),
        (Session, sizes.retained_sessions, sessions("retained", sizes.retained_sessions)),
        (Session, sizes.live_sessions, sessions("live", sizes.live_sessions)),
        (
            AuthEvent,
            sizes.audit_events,
            lambda rng, start, n: audit_columns(
                world, salt, ips, rng, start, n, sizes.audit_events
            ),
        ),
    ]


def _progress(line: str) -> None:
    print(f"  seed: {line}", file=sys.stderr, flush=True)


def audit_partitions_prepare(conn, world: World) -> int:
    """A partitioned audit table (issue 15.2) gets its week partitions for the seeded year (and
    the weeks ahead that maintenance keeps), made by the project's own code, so that COPY into
    the parent routes each row to its week rather than to the DEFAULT partition. Returns how
    many were created."""
    kind = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'audit_authevent'::regclass"
    ).fetchone()[0]
    if kind != "p":
        return 0
    try:
        from audit.partitions import audit_partitions_create, audit_partitions_create_ahead
    except ImportError:
        raise SeedError(
            "audit_authevent is partitioned but audit.partitions has no audit_partitions_create"
        ) from None
    from django.db import connections

    now = datetime.fromtimestamp(world.now, UTC)
    start = datetime.fromtimestamp(world.now - world.audit_days * DAY, UTC)
    created = list(audit_partitions_create(start=start, end=now))
    created += list(audit_partitions_create_ahead(now=now))
    connections.close_all()
    return len(created)
