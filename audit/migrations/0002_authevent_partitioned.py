"""Partition audit_authevent by week (PostgreSQL only; SQLite keeps the plain table).

No row is copied or rewritten, so this is safe on a large table while the previous release
serves (README "Audit trail partitions"):

1. Outside any transaction, build CONCURRENTLY (inserts go on) the indexes the old table needs
   to become a partition: a unique index on (occurred_at, id), the partitioned primary key, and
   an index on id, which takes over id lookups from the old primary key.
2. Add CHECK (occurred_at < boundary) NOT VALID (a brief lock) and VALIDATE it (one read of
   the table under SHARE UPDATE EXCLUSIVE: inserts go on). `boundary` is the first Monday
   00:00 UTC at least a day after now and after the newest event, so rows the previous release
   inserts meanwhile still satisfy it.
3. One short transaction holding ACCESS EXCLUSIVE on the old table (taken with a lock timeout,
   retried): rename it audit_authevent_legacy (and its indexes); create the partitioned
   audit_authevent with the same columns, an identity continuing the old sequence, primary key
   (occurred_at, id), the same foreign key and indexes, plus an index on id; attach the old table
   FOR VALUES FROM (MINVALUE) TO (boundary): the CHECK proves the range and the indexes match,
   so PostgreSQL neither scans the table nor builds an index; create the DEFAULT partition, so
   every insert has a partition. An empty old table (a new installation) is dropped instead of
   attached. Statements that waited for the lock then run against the new table.
4. The week partitions, from the current week (or `boundary`, below which the legacy partition
   holds everything) through the fourth week after it, each in its own transaction, as a plain
   table then ATTACHed, which takes only SHARE UPDATE EXCLUSIVE on audit_authevent. A re-run
   after an interruption completes what is missing.

The legacy partition is dropped by purge_audit_events once `boundary` is past the retention;
until then its expired rows are deleted in batches, as before. The model is unchanged: Django
keeps `id` as the primary key. The reverse (for development) copies every row back into a plain
table.
"""

import time
from datetime import UTC, datetime, timedelta

from django.db import migrations, transaction
from django.db.utils import OperationalError
from django.utils import timezone

TABLE = "audit_authevent"
LEGACY = "audit_authevent_legacy"
DEFAULT = "audit_authevent_default"
BOUND_CHECK = "audit_authevent_legacy_bound"
LEGACY_PKEY = "audit_authevent_legacy_pkey"
LEGACY_ID_INDEX = "audit_authevent_legacy_id_idx"
ID_INDEX = "audit_event_id_idx"
WEEK = timedelta(days=7)
WEEKS_AHEAD = 4
MARGIN = timedelta(days=1)
LOCK_TIMEOUT = "500ms"
LOCK_ATTEMPTS = 60


def _week_start(moment):
    day = moment.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=day.weekday()), datetime.min.time(), tzinfo=UTC)


def _literal(moment):
    return f"'{moment.astimezone(UTC).isoformat()}'"


def _is_partitioned(cursor):
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [TABLE])
    row = cursor.fetchone()
    return row is not None and row[0] == "p"


def _with_lock(connection, work):
    """Run `work(cursor)` in one transaction whose locks are awaited at most LOCK_TIMEOUT, so
    the queue of inserts behind a waiting ALTER never grows long; retried, then the error."""
    for attempt in range(LOCK_ATTEMPTS):
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
                return work(cursor)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03" or attempt + 1 == LOCK_ATTEMPTS:
                raise
            time.sleep(1)


def _build_index(cursor, name, columns, unique=False):
    """CREATE INDEX CONCURRENTLY, replacing an invalid one left by an interrupted earlier run."""
    cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
    row = cursor.fetchone()
    if row is not None and row[0]:
        return
    if row is not None:
        cursor.execute(f"DROP INDEX CONCURRENTLY {name}")
    kind = "UNIQUE INDEX" if unique else "INDEX"
    cursor.execute(f"CREATE {kind} CONCURRENTLY {name} ON {TABLE} ({columns})")


def _boundary(cursor):
    cursor.execute(f"SELECT max(occurred_at) FROM {TABLE}")
    newest = cursor.fetchone()[0]
    latest = max(timezone.now(), newest) if newest else timezone.now()
    return _week_start(latest + MARGIN) + WEEK


def _next_id(cursor):
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
    sequence = cursor.fetchone()[0]
    next_id = 1
    if sequence:
        cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
        last_value, is_called = cursor.fetchone()
        next_id = last_value + 1 if is_called else last_value
    cursor.execute(f"SELECT max(id) FROM {TABLE}")
    highest = cursor.fetchone()[0]
    return max(next_id, (highest or 0) + 1)


def _plain_indexes(cursor, table):
    """(name, CREATE INDEX statement) of the indexes behind no constraint (the model's)."""
    cursor.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = to_regclass(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                          AND k.conrelid = i.indrelid)
        ORDER BY c.relname
        """,
        [table],
    )
    return cursor.fetchall()


def _constraints(cursor, table, kind):
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = to_regclass(%s) AND contype = %s ORDER BY conname",
        [table, kind],
    )
    return cursor.fetchall()


def _swap(cursor, boundary):
    cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
    now = timezone.now()
    if now >= boundary:
        raise RuntimeError(f"{BOUND_CHECK} ({boundary}) has passed; run migrate again")
    indexes = [
        (name, sql)
        for name, sql in _plain_indexes(cursor, TABLE)
        if name not in (LEGACY_PKEY, LEGACY_ID_INDEX)
    ]
    foreign_keys = _constraints(cursor, TABLE, "f")
    ((old_pkey, _),) = _constraints(cursor, TABLE, "p")
    next_id = _next_id(cursor)

    # The old table becomes the legacy partition, keeping its indexes under new names.
    cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id DROP IDENTITY IF EXISTS")
    cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {LEGACY}")
    for name, _ in indexes:
        cursor.execute(f"ALTER INDEX {name} RENAME TO {name[:56]}_legacy")
    cursor.execute(f"ALTER TABLE {LEGACY} DROP CONSTRAINT {old_pkey}")
    cursor.execute(
        f"ALTER TABLE {LEGACY} ADD CONSTRAINT {LEGACY_PKEY} PRIMARY KEY USING INDEX {LEGACY_PKEY}"
    )

    cursor.execute(f"CREATE TABLE {TABLE} (LIKE {LEGACY}) PARTITION BY RANGE (occurred_at)")
    cursor.execute(
        f"ALTER TABLE {TABLE} ALTER COLUMN id "
        f"ADD GENERATED BY DEFAULT AS IDENTITY (START WITH {int(next_id)})"
    )
    cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (occurred_at, id)")
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
    for _, create_index in indexes:
        cursor.execute(create_index)  # names the table audit_authevent: now the partitioned one
    cursor.execute(f"CREATE INDEX {ID_INDEX} ON {TABLE} (id)")

    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {LEGACY})")
    if cursor.fetchone()[0]:
        cursor.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {LEGACY} "
            f"FOR VALUES FROM (MINVALUE) TO ({_literal(boundary)})"
        )
        cursor.execute(f"ALTER TABLE {LEGACY} DROP CONSTRAINT {BOUND_CHECK}")
    else:
        cursor.execute(f"DROP TABLE {LEGACY}")
    # Every insert has a partition from here on; the weeks follow, in their own transactions.
    cursor.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT")


def _legacy_upper(cursor):
    """The legacy partition's upper bound (read back by PostgreSQL itself), or None."""
    cursor.execute(
        "SELECT (regexp_match(pg_get_expr(relpartbound, oid), 'TO \\(''(.*)''\\)$'))[1]::timestamptz "
        "FROM pg_class WHERE oid = to_regclass(%s)",
        [LEGACY],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _create_week(cursor, lower):
    """Create one week as a plain table and ATTACH it: SHARE UPDATE EXCLUSIVE on the parent, so
    inserts and reads go on (CREATE TABLE ... PARTITION OF would lock them out). A row that
    reached DEFAULT for that week meanwhile is moved in first, or ATTACH would refuse."""
    name = f"{TABLE}_p{lower:%Y%m%d}"
    cursor.execute(f"LOCK TABLE {TABLE} IN SHARE UPDATE EXCLUSIVE MODE")
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    if cursor.fetchone()[0]:
        return
    in_week = f"occurred_at >= {_literal(lower)} AND occurred_at < {_literal(lower + WEEK)}"
    cursor.execute(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"CREATE TABLE {name} (LIKE {TABLE})")
    cursor.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT} WHERE {in_week} RETURNING *) "
        f"INSERT INTO {name} SELECT * FROM moved"
    )
    cursor.execute(
        f"ALTER TABLE {TABLE} ATTACH PARTITION {name} "
        f"FOR VALUES FROM ({_literal(lower)}) TO ({_literal(lower + WEEK)})"
    )


def _create_weeks(connection):
    """The current week (unless the legacy partition covers it) through WEEKS_AHEAD after it."""
    now = timezone.now()
    with connection.cursor() as cursor:
        legacy_upper = _legacy_upper(cursor)
    lower = _week_start(now)
    if legacy_upper is not None:
        lower = max(lower, legacy_upper)
    while lower <= _week_start(now) + WEEKS_AHEAD * WEEK:
        _with_lock(connection, lambda cursor, lower=lower: _create_week(cursor, lower))
        lower += WEEK


def partition(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        partitioned = _is_partitioned(cursor)
    if not partitioned:
        _convert(connection)
    _create_weeks(connection)


def _convert(connection):
    with connection.cursor() as cursor:
        _build_index(cursor, LEGACY_PKEY, "occurred_at, id", unique=True)
        _build_index(cursor, LEGACY_ID_INDEX, "id")
        boundary = _boundary(cursor)

    def add_check(cursor):
        cursor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {BOUND_CHECK}")
        cursor.execute(
            f"ALTER TABLE {TABLE} ADD CONSTRAINT {BOUND_CHECK} "
            f"CHECK (occurred_at < {_literal(boundary)}) NOT VALID"
        )

    _with_lock(connection, add_check)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} VALIDATE CONSTRAINT {BOUND_CHECK}")
    try:
        _with_lock(connection, lambda cursor: _swap(cursor, boundary))
    except Exception:
        # Left in place, the CHECK would refuse every insert once `boundary` passes.
        _with_lock(
            connection,
            lambda cursor: cursor.execute(
                f"ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS {BOUND_CHECK}"
            ),
        )
        raise


def unpartition(apps, schema_editor):
    """Development only: copy the events back into a plain table as migration 0001 made it."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    model = apps.get_model("audit", "AuthEvent")
    columns = ", ".join(schema_editor.quote_name(f.column) for f in model._meta.concrete_fields)

    def work(cursor):
        if not _is_partitioned(cursor):
            return
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        next_id = _next_id(cursor)
        cursor.execute(
            f"CREATE TEMPORARY TABLE audit_authevent_copy ON COMMIT DROP AS "
            f"SELECT {columns} FROM {TABLE}"
        )
        cursor.execute(f"DROP TABLE {TABLE}")
        schema_editor.create_model(model)
        cursor.execute(
            f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM audit_authevent_copy"
        )
        cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id RESTART WITH {int(next_id)}")

    _with_lock(connection, work)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run in a transaction; each step opens its own.
    atomic = False

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(partition, unpartition, atomic=False),
    ]
