"""The audit table's weekly partitions on PostgreSQL (audit/partitions.py): the layout migrate
leaves, routing by week, the DEFAULT partition, and retention that drops whole weeks."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import partitions
from audit.events import EventType
from audit.models import AuthEvent
from audit.partitions import (
    DEFAULT_PARTITION,
    TABLE,
    WEEK,
    WEEKS_AHEAD,
    audit_partitions,
    audit_partitions_create,
    audit_partitions_create_ahead,
    week_partition_name,
    week_start,
)
from audit.services import audit_event_record, audit_events_purge


def fetch(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def partition_of(event: AuthEvent) -> str:
    ((name,),) = fetch(
        "SELECT tableoid::regclass::text FROM audit_authevent WHERE id = %s", [event.pk]
    )
    return name


def partition_names() -> set[str]:
    return {part.name for part in audit_partitions()}


def rows_in(table: str) -> int:
    sql = "SELECT count(*) FROM audit_authevent WHERE tableoid = %s::regclass"
    return fetch(sql, [table])[0][0]


def add_events(start: datetime, count: int) -> None:
    """`count` events a minute apart from `start`, in one statement through the parent table."""
    fetch(
        "INSERT INTO audit_authevent (event_type, occurred_at, client_id, user_agent, details) "
        "SELECT 'login.failed', %s + g * interval '1 minute', '', '', '{}' "
        "FROM generate_series(0, %s - 1) g",
        [start, count],
    )
    # The test's transaction would otherwise still hold the deferred foreign-key checks of
    # these rows, and PostgreSQL refuses to drop a table with pending trigger events (a purge
    # runs in its own transactions).
    fetch("SET CONSTRAINTS ALL IMMEDIATE")


def purge(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("purge_audit_events", *args, stdout=out)
    return out.getvalue().splitlines()


def test_week_grid_starts_on_monday_utc():
    sunday_night = datetime(2026, 12, 13, 23, 59, tzinfo=UTC)
    assert week_start(sunday_night) == datetime(2026, 12, 7, tzinfo=UTC)
    # Monday 00:30 in Paris is still Sunday in UTC: the grid is UTC's.
    paris = timezone.get_fixed_timezone(60)
    assert week_start(datetime(2026, 12, 14, 0, 30, tzinfo=paris)) == datetime(
        2026, 12, 7, tzinfo=UTC
    )
    assert week_partition_name(datetime(2026, 12, 28, tzinfo=UTC)) == "audit_authevent_p20261228"


def test_migrate_leaves_a_table_partitioned_by_week(db):
    ((strategy, key),) = fetch(
        "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "WHERE p.partrelid = %s::regclass",
        [TABLE],
    )
    assert (strategy, key) == ("r", "occurred_at")
    this_week = week_start(timezone.now())
    weeks = {week_partition_name(this_week + k * WEEK) for k in range(WEEKS_AHEAD + 1)}
    children = {
        name
        for (name,) in fetch(
            "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass",
            [TABLE],
        )
    }
    assert children == weeks | {DEFAULT_PARTITION} == partition_names()
    (default,) = [part for part in audit_partitions() if part.is_default]
    assert (default.lower, default.upper) == (None, None)


def test_primary_key_holds_the_partition_key_and_id_stays_indexed(db):
    indexes = dict(
        fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
    )
    assert indexes["audit_authevent_pkey"].endswith("(occurred_at, id)")
    assert indexes["audit_event_id_idx"].endswith("(id)")
    # Every index of the model is a partitioned index, present on every partition.
    assert {index.name for index in AuthEvent._meta.indexes} < set(indexes)
    for part in partition_names():
        (count,) = fetch("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [part])[0]
        assert count == len(indexes)
    plan = "\n".join(row[0] for row in fetch("EXPLAIN SELECT * FROM audit_authevent WHERE id = 1"))
    assert "Seq Scan" not in plan


def test_events_are_routed_to_the_partition_of_their_week(db):
    now = timezone.now()
    events = {
        week_partition_name(week_start(now)): now,
        week_partition_name(week_start(now) + WEEK): now + WEEK,
        week_partition_name(week_start(now) + WEEKS_AHEAD * WEEK): now + WEEKS_AHEAD * WEEK,
        DEFAULT_PARTITION: now - timedelta(days=400),
    }
    for expected, when in events.items():
        event = audit_event_record(event=EventType.LOGOUT, occurred_at=when)
        assert partition_of(event) == expected
        assert AuthEvent.objects.get(pk=event.pk).occurred_at == when


def test_an_event_no_week_covers_lands_in_default_and_moves_when_its_week_is_created(db):
    """PostgreSQL refuses to create a partition for rows the DEFAULT partition holds: the row is
    moved into the new week partition in the same transaction."""
    later = timezone.now() + 20 * WEEK
    stray = audit_event_record(event=EventType.LOGOUT, occurred_at=later)
    assert partition_of(stray) == DEFAULT_PARTITION
    name = week_partition_name(week_start(later))

    planned = [str(change) for change in audit_partitions_create_ahead(now=later, dry_run=True)]
    assert planned[0].startswith(f"would create partition {name} (")
    assert "would move 1 audit event(s) into it from audit_authevent_default" in planned[0]
    assert len(planned) == WEEKS_AHEAD + 1
    assert partition_of(stray) == DEFAULT_PARTITION and name not in partition_names()

    created = list(audit_partitions_create_ahead(now=later))
    assert (created[0].tables, created[0].rows) == ((name,), 1)
    assert partition_of(stray) == name
    assert rows_in(DEFAULT_PARTITION) == 0
    assert AuthEvent.objects.get(pk=stray.pk).event_type == "logout"
    # Created once: a second run finds nothing to do.
    assert list(audit_partitions_create_ahead(now=later)) == []


def test_purge_drops_expired_weeks_whole_and_keeps_the_week_straddling_the_cutoff(db):
    this_week = week_start(timezone.now())
    oldest, middle, straddling = (this_week - k * WEEK for k in (12, 11, 10))
    created = list(audit_partitions_create(start=oldest, end=straddling))
    assert [c.tables[0] for c in created] == [
        week_partition_name(w) for w in (oldest, middle, straddling)
    ]
    add_events(oldest, 500)
    add_events(straddling, 60 * 24 * 5)  # five days of one event a minute
    fetch(f"ANALYZE {week_partition_name(oldest)}")
    cutoff = straddling + timedelta(days=2)  # three days of the straddling week are younger
    stray = audit_event_record(event=EventType.LOGOUT, occurred_at=cutoff - timedelta(days=300))
    fetch("SET CONSTRAINTS ALL IMMEDIATE")

    with CaptureQueriesContext(connection) as queries:
        report = [str(c) for c in audit_events_purge(occurred_before=cutoff, batch_size=2)]

    assert report == [
        f"dropped partition {week_partition_name(oldest)} ({oldest:%Y-%m-%d} to "
        f"{middle:%Y-%m-%d}, about 500 audit event(s))",
        f"dropped partition {week_partition_name(middle)} ({middle:%Y-%m-%d} to "
        f"{straddling:%Y-%m-%d}, an unknown number of audit event(s))",
        f"deleted 1 audit event(s) older than {cutoff.isoformat()} from {DEFAULT_PARTITION}",
    ]
    statements = [q["sql"] for q in queries.captured_queries]
    drops = [sql for sql in statements if sql.startswith("DROP TABLE")]
    assert len(drops) == 2
    # The 500 events left by DROP alone: the only rows deleted one by one are the DEFAULT's.
    deletes = [sql for sql in statements if sql.startswith("DELETE")]
    assert deletes and all(f'"{DEFAULT_PARTITION}"' in sql for sql in deletes)
    assert week_partition_name(oldest) not in partition_names()
    assert rows_in(week_partition_name(straddling)) == 60 * 24 * 5
    assert not AuthEvent.objects.filter(pk=stray.pk).exists()
    record = AuthEvent.objects.get(event_type=EventType.AUDIT_PURGED)
    assert record.details["deleted"] == 1
    assert record.details["partitions_dropped"] == [
        week_partition_name(w) for w in (oldest, middle)
    ]


def test_purge_command_reports_one_line_per_action_and_dry_run_changes_nothing(db, settings):
    settings.AUTHSERVER_AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    old_week = week_start(now) - 10 * WEEK
    list(audit_partitions_create(start=old_week, end=old_week))
    add_events(old_week, 3)
    layout = partition_names()

    dry = purge("--dry-run")
    assert dry[0].startswith(f"would drop partition {week_partition_name(old_week)} (")
    assert dry[1].startswith("would delete 0 audit event(s) older than ")
    assert len(dry) == 2
    assert partition_names() == layout and rows_in(week_partition_name(old_week)) == 3

    done = purge()
    assert done[0].startswith(f"dropped partition {week_partition_name(old_week)} (")
    assert week_partition_name(old_week) not in partition_names()
    (again,) = purge()
    assert again.startswith("deleted 0 audit event(s) older than ")


@pytest.fixture
def other_connection():
    params = connection.get_connection_params()
    conn = psycopg.connect(
        **{k: v for k, v in params.items() if k in ("dbname", "user", "password", "host", "port")}
    )
    yield conn
    conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_purge_that_cannot_get_its_lock_stops_with_one_line_and_changes_nothing(
    other_connection, monkeypatch
):
    """DROP waits for ACCESS EXCLUSIVE on audit_authevent at most LOCK_TIMEOUT, so a long
    reader never makes the inserts queue behind the purge; the run says so and can be repeated."""
    monkeypatch.setattr(partitions, "LOCK_TIMEOUT", "200ms")
    old_week = week_start(timezone.now()) - 60 * WEEK
    name = week_partition_name(old_week)
    list(audit_partitions_create(start=old_week, end=old_week))
    try:
        with other_connection.transaction():
            other_connection.execute(
                "SELECT count(*) FROM audit_authevent"
            )  # a reader holds its lock
            with pytest.raises(CommandError, match="stayed locked by another session"):
                purge()
            assert name in partition_names()
        assert purge()[0].startswith(f"dropped partition {name} (")
    finally:
        fetch(f'DROP TABLE IF EXISTS "{name}"')
