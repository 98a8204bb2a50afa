"""The audit table's weekly partitions on PostgreSQL, and the maintenance that keeps them.

Layout (made by migration 0002, kept by `purge_audit_events`; SQLite keeps one plain table):

- `audit_authevent`: partitioned by RANGE (occurred_at). Its primary key is (occurred_at, id),
  because a partitioned table's unique keys must contain the partition key; Django still sees
  `id` as the primary key (ids come from one identity sequence), and an index on id keeps
  lookups by id indexed. The model's indexes are partitioned indexes: every partition has them.
- `audit_authevent_pYYYYMMDD`: the events of the week starting Monday YYYY-MM-DD 00:00 UTC
  (weeks on a fixed grid, so every run computes the same bounds).
- `audit_authevent_default`: the DEFAULT partition, for an event no week partition covers
  (maintenance stopped, or a clock far off), so an insert never fails for want of a partition.
  Creating the week that such a row belongs to moves the row into it.
- `audit_authevent_legacy`: only on an installation upgraded with events in it: the old plain
  table, attached as the partition FROM (MINVALUE) TO (the first week boundary after the
  upgrade). It is dropped like a week partition once that boundary is past the retention;
  until then its expired rows are deleted in batches.

Retention drops a partition once its whole range is older than the cutoff, so an event is kept
between AUTHSERVER_AUDIT_RETENTION_DAYS and that plus seven days, and purging a week costs one
DROP TABLE however many events it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from django.db import connections, router, transaction

from audit.models import AuthEvent

TABLE = AuthEvent._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
WEEK = timedelta(days=7)
# Maintenance keeps the current week and this many following weeks created.
WEEKS_AHEAD = 4
# Creating or dropping a partition waits at most this long for its locks, so it never queues the
# inserts and reads behind it for longer (a step that times out changes nothing; run it again).
LOCK_TIMEOUT = "1s"


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the week `moment` falls in: the grid every partition bound is on."""
    day = moment.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=day.weekday()), time(), tzinfo=UTC)


def week_partition_name(start: datetime) -> str:
    """`audit_authevent_p20261207` for the partition starting Monday 2026-12-07 (the start date,
    not an ISO week number, whose year differs from the calendar's around New Year)."""
    return f"{TABLE}_p{start.astimezone(UTC):%Y%m%d}"


@dataclass(frozen=True)
class AuditPartition:
    name: str
    # None below: MINVALUE (the legacy partition); None above: MAXVALUE. Both None for DEFAULT.
    lower: datetime | None
    upper: datetime | None
    is_default: bool
    estimated_rows: int | None  # the planner's estimate (pg_class.reltuples); None if unknown

    def overlaps(self, lower: datetime, upper: datetime) -> bool:
        if self.is_default:
            return False
        return (self.lower is None or self.lower < upper) and (
            self.upper is None or lower < self.upper
        )

    @property
    def rows_deleted_one_by_one(self) -> bool:
        """The partitions retention deletes rows from: DEFAULT (any range) and the legacy one
        (open below). A week partition is only ever dropped whole."""
        return self.is_default or self.lower is None


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d}" if moment.time() == time() else moment.isoformat()


@dataclass(frozen=True)
class TrailChange:
    """One step of audit retention or partition upkeep, for the purge command's report."""

    action: Literal["create", "drop", "delete"]
    tables: tuple[str, ...]
    # create: rows moved from the DEFAULT partition; drop: the estimate (None: unknown);
    # delete: rows deleted.
    rows: int | None
    lower: datetime | None = None
    upper: datetime | None = None
    dry_run: bool = False

    def __str__(self) -> str:
        table = ", ".join(self.tables)
        rows = "an unknown number of" if self.rows is None else str(self.rows)
        if self.action == "delete":
            verb = "would delete" if self.dry_run else "deleted"
            cutoff = self.upper.isoformat() if self.upper else "-"
            return f"{verb} {rows} audit event(s) older than {cutoff} from {table}"
        span = f"{_when(self.lower)} to {_when(self.upper)}"
        if self.lower is None:
            span = f"everything before {_when(self.upper)}"
        if self.action == "create":
            verb = "would create" if self.dry_run else "created"
            moved = "would move" if self.dry_run else "moved"
            return (
                f"{verb} partition {table} ({span}); {moved} {rows} audit event(s) into it "
                f"from {DEFAULT_PARTITION}"
            )
        verb = "would drop" if self.dry_run else "dropped"
        about = "an unknown number of" if self.rows is None else f"about {self.rows}"
        return f"{verb} partition {table} ({span}, {about} audit event(s))"


def _alias() -> str:
    return router.db_for_write(AuthEvent)


def audit_table_is_partitioned(*, using: str | None = None) -> bool:
    """True on PostgreSQL once migration 0002 has run; False on SQLite."""
    connection = connections[using or _alias()]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))",
            [TABLE],
        )
        return cursor.fetchone()[0]


# The bound text PostgreSQL prints (FOR VALUES FROM ('...') TO ('...')) is read back by
# PostgreSQL in the same statement, so the session's TimeZone and DateStyle cannot skew it.
_PARTITIONS_SQL = r"""
WITH parts AS (
    SELECT c.relname,
           c.reltuples,
           pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default,
           regexp_match(pg_get_expr(c.relpartbound, c.oid),
                        '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') AS bounds
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = to_regclass(%s)
)
SELECT relname,
       CASE WHEN bounds[1] LIKE '''%%' THEN btrim(bounds[1], '''')::timestamptz END,
       CASE WHEN bounds[2] LIKE '''%%' THEN btrim(bounds[2], '''')::timestamptz END,
       is_default,
       CASE WHEN reltuples >= 0 THEN reltuples::bigint END
FROM parts
ORDER BY is_default, 2 NULLS FIRST
"""


def audit_partitions(*, using: str | None = None) -> list[AuditPartition]:
    """The partitions of the audit table, oldest first, DEFAULT last ([] when not partitioned)."""
    connection = connections[using or _alias()]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(_PARTITIONS_SQL, [TABLE])
        return [AuditPartition(*row) for row in cursor.fetchall()]


def audit_partitions_missing(
    *, start: datetime, end: datetime, using: str | None = None
) -> list[tuple[datetime, datetime]]:
    """The weeks from the one containing `start` to the one containing `end` that no partition
    covers yet (a week the legacy partition covers, even in part, is not created)."""
    existing = audit_partitions(using=using)
    weeks = []
    lower = week_start(start)
    while lower <= end:
        upper = lower + WEEK
        if not any(part.overlaps(lower, upper) for part in existing):
            weeks.append((lower, upper))
        lower = upper
    return weeks


def _lock_timeout(cursor) -> None:
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])


def _literal(moment: datetime) -> str:
    # Our own computed datetimes, never input: a quoted ISO 8601 literal for partition bounds.
    return f"'{moment.astimezone(UTC).isoformat()}'"


def audit_partition_create(
    *, lower: datetime, upper: datetime, dry_run: bool = False, using: str | None = None
) -> TrailChange | None:
    """Create the partition for [lower, upper) and move into it the rows the DEFAULT partition
    holds for that range, in one transaction; None if a partition already covers the range.

    The partition is made as a plain table and then attached: ATTACH takes SHARE UPDATE EXCLUSIVE
    on audit_authevent (inserts and reads go on; CREATE TABLE ... PARTITION OF would take ACCESS
    EXCLUSIVE), ACCESS EXCLUSIVE on the new table and on the DEFAULT partition (PostgreSQL
    scans it to prove no row it keeps belongs to the new range, and refuses the attach if one
    does: hence the move first, with DEFAULT locked so no such row arrives in between), and
    SHARE ROW EXCLUSIVE on accounts_user while it checks the foreign key on the new rows.
    Indexes, the primary key and the foreign key are created on the new table by the attach.
    """
    alias = using or _alias()
    connection = connections[alias]
    quote = connection.ops.quote_name
    name = week_partition_name(lower)
    in_range = "occurred_at >= %s AND occurred_at < %s"
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        _lock_timeout(cursor)
        # Self-conflicting: two maintenance runs take turns here, and see each other's work.
        cursor.execute(f"LOCK TABLE {quote(TABLE)} IN SHARE UPDATE EXCLUSIVE MODE")
        parts = audit_partitions(using=alias)
        if any(part.overlaps(lower, upper) for part in parts):
            return None
        has_default = any(part.is_default for part in parts)
        if dry_run:
            moved = 0
            if has_default:
                cursor.execute(
                    f"SELECT count(*) FROM {quote(DEFAULT_PARTITION)} WHERE {in_range}",  # noqa: S608 - constant names
                    [lower, upper],
                )
                moved = cursor.fetchone()[0]
            return TrailChange("create", (name,), moved, lower, upper, dry_run=True)
        cursor.execute(f"CREATE TABLE {quote(name)} (LIKE {quote(TABLE)})")
        moved = 0
        if has_default:
            cursor.execute(f"LOCK TABLE {quote(DEFAULT_PARTITION)} IN ACCESS EXCLUSIVE MODE")
            columns = ", ".join(quote(f.column) for f in AuthEvent._meta.concrete_fields)
            cursor.execute(
                f"WITH moved AS (DELETE FROM {quote(DEFAULT_PARTITION)} WHERE {in_range} "  # noqa: S608 - constant names
                f"RETURNING {columns}) "
                f"INSERT INTO {quote(name)} ({columns}) SELECT {columns} FROM moved",
                [lower, upper],
            )
            moved = cursor.rowcount
        cursor.execute(
            f"ALTER TABLE {quote(TABLE)} ATTACH PARTITION {quote(name)} "
            f"FOR VALUES FROM ({_literal(lower)}) TO ({_literal(upper)})"
        )
    return TrailChange("create", (name,), moved, lower, upper)


def audit_partitions_create(
    *, start: datetime, end: datetime, dry_run: bool = False, using: str | None = None
) -> Iterator[TrailChange]:
    """Create every missing week partition from the week of `start` to the week of `end`, one
    transaction each, oldest first; yields each change as it is made. Nothing on SQLite."""
    if not audit_table_is_partitioned(using=using):
        return
    for lower, upper in audit_partitions_missing(start=start, end=end, using=using):
        change = audit_partition_create(lower=lower, upper=upper, dry_run=dry_run, using=using)
        if change is not None:
            yield change


def audit_partitions_create_ahead(
    *, now: datetime, dry_run: bool = False, using: str | None = None
) -> Iterator[TrailChange]:
    """The current week and the WEEKS_AHEAD following ones, so inserts find their partition
    for weeks even if maintenance stops (and the DEFAULT partition catches the rest)."""
    return audit_partitions_create(
        start=now, end=now + WEEKS_AHEAD * WEEK, dry_run=dry_run, using=using
    )


def audit_partitions_drop_expired(
    *, occurred_before: datetime, dry_run: bool = False, using: str | None = None
) -> Iterator[TrailChange]:
    """Drop every partition whose whole range is older than `occurred_before`, one short
    transaction each; yields each change as it is made.

    DROP TABLE of a partition is a catalog change and the removal of its files: no row is read,
    deleted or written to the WAL, whatever the partition holds. It takes ACCESS EXCLUSIVE on the
    partition, audit_authevent and the DEFAULT partition for that (tens of milliseconds), and
    waits for them at most LOCK_TIMEOUT.
    DETACH PARTITION takes the same locks; DETACH ... CONCURRENTLY would not, but PostgreSQL
    refuses it on a table with a DEFAULT partition, and the DEFAULT partition is what makes
    every insert safe.
    """
    alias = using or _alias()
    connection = connections[alias]
    quote = connection.ops.quote_name
    for part in audit_partitions(using=alias):
        if part.is_default or part.upper is None or part.upper > occurred_before:
            continue
        if not dry_run:
            with transaction.atomic(using=alias), connection.cursor() as cursor:
                _lock_timeout(cursor)
                cursor.execute(f"DROP TABLE IF EXISTS {quote(part.name)}")
        yield TrailChange(
            "drop", (part.name,), part.estimated_rows, part.lower, part.upper, dry_run=dry_run
        )


def audit_leftover_events_delete(
    *, occurred_before: datetime, batch_size: int, dry_run: bool = False, using: str | None = None
) -> TrailChange:
    """Delete the expired rows of the partitions that are not dropped whole (DEFAULT and the
    legacy partition), `batch_size` rows per statement, each its own short transaction (as the
    unpartitioned table was purged). Week partitions are never touched here."""
    alias = using or _alias()
    connection = connections[alias]
    quote = connection.ops.quote_name
    tables = tuple(p.name for p in audit_partitions(using=alias) if p.rows_deleted_one_by_one)
    total = 0
    with connection.cursor() as cursor:
        for table in tables:
            old = f"FROM {quote(table)} WHERE occurred_at < %s"
            if dry_run:
                cursor.execute(f"SELECT count(*) {old}", [occurred_before])
                total += cursor.fetchone()[0]
                continue
            while True:
                cursor.execute(
                    f"DELETE FROM {quote(table)} WHERE ctid = ANY(ARRAY("  # noqa: S608 - constant names
                    f"SELECT ctid {old} LIMIT %s))",
                    [occurred_before, batch_size],
                )
                total += cursor.rowcount
                if cursor.rowcount < batch_size:
                    break
    return TrailChange("delete", tables, total, upper=occurred_before, dry_run=dry_run)
