"""Migration audit.0002 on an installation that already has events: the plain table becomes the
legacy partition as it is (no row copied, no index rebuilt), and everything still reads it."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from audit.events import EventType
from audit.models import AuthEvent
from audit.partitions import (
    TABLE,
    WEEK,
    audit_partitions,
    audit_partitions_create_ahead,
    audit_table_is_partitioned,
    week_start,
)
from audit.services import audit_event_record, audit_events_purge

LEGACY = "audit_authevent_legacy"


def fetch(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def index_oids(table: str) -> set[int]:
    return {
        oid
        for (oid,) in fetch(
            "SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass", [table]
        )
    }


@pytest.fixture
def fresh_layout_afterwards(transactional_db):
    """Leave the table as a fresh migrate makes it (no legacy partition, this week created)."""
    yield
    call_command("migrate", "audit", verbosity=0)
    fetch(f"DROP TABLE IF EXISTS {LEGACY}")
    list(audit_partitions_create_ahead(now=timezone.now()))


def test_existing_events_become_the_legacy_partition_and_stay_readable(
    fresh_layout_afterwards, client, make_user
):
    call_command("migrate", "audit", "0001_initial", verbosity=0)
    assert not audit_table_is_partitioned()
    now = timezone.now()
    alice = make_user(username="alice")
    old = [
        audit_event_record(
            event=EventType.LOGIN_FAILED, user=alice, occurred_at=now - timedelta(days=days)
        )
        for days in (400, 40, 0)
    ]
    secondary_indexes = index_oids(TABLE) - {
        oid
        for (oid,) in fetch(
            "SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass AND indisprimary",
            [TABLE],
        )
    }

    call_command("migrate", "audit", verbosity=0)

    assert audit_table_is_partitioned()
    (legacy,) = [part for part in audit_partitions() if part.name == LEGACY]
    assert legacy.lower is None
    boundary = legacy.upper
    assert boundary == week_start(boundary) and boundary.tzinfo is not None
    assert now + timedelta(days=1) <= boundary < now + timedelta(days=1) + WEEK
    # The same table, not a copy: its indexes are the old ones, now children of the parent's.
    assert secondary_indexes < index_oids(LEGACY)
    attached = {
        oid
        for (oid,) in fetch(
            "SELECT inhrelid FROM pg_inherits WHERE inhrelid = ANY(%s)", [list(secondary_indexes)]
        )
    }
    assert attached == secondary_indexes
    assert not fetch(
        "SELECT 1 FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'", [LEGACY]
    )
    # The weeks after the boundary, through the fourth after the current one, exist.
    weeks = sorted(part.lower for part in audit_partitions() if part.lower and not part.is_default)
    assert weeks[0] == boundary and weeks[-1] == week_start(now) + 4 * WEEK

    # Readable through the ORM, by id, in the admin; ids continue after the old ones.
    for event in old:
        stored = AuthEvent.objects.get(pk=event.pk)
        assert (stored.occurred_at, stored.user_id) == (event.occurred_at, alice.pk)
    new = audit_event_record(event=EventType.LOGOUT, user=alice)
    assert new.pk > max(event.pk for event in old)
    assert fetch(
        "SELECT tableoid::regclass::text FROM audit_authevent WHERE id = %s", [new.pk]
    ) == [(LEGACY,)]
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    listing = client.get(reverse("admin:audit_authevent_changelist"))
    assert listing.status_code == 200
    assert {obj.pk for obj in listing.context["cl"].result_list} == {e.pk for e in [*old, new]}
    detail = client.get(reverse("admin:audit_authevent_change", args=[old[0].pk]))
    assert detail.status_code == 200
    assert b"login.failed" in detail.content

    # Until its boundary is past the retention, the legacy partition loses rows in batches...
    changes = list(audit_events_purge(occurred_before=now - timedelta(days=30), batch_size=1))
    assert [(c.action, c.rows) for c in changes] == [("delete", 2)]
    assert LEGACY in changes[0].tables
    assert set(AuthEvent.objects.values_list("pk", flat=True)) >= {old[2].pk, new.pk}
    assert not AuthEvent.objects.filter(pk__in=[old[0].pk, old[1].pk]).exists()
    # ... and then goes whole, like a week partition.
    changes = list(audit_events_purge(occurred_before=boundary.astimezone(UTC)))
    assert (changes[0].action, changes[0].tables) == ("drop", (LEGACY,))
    assert LEGACY not in {part.name for part in audit_partitions()}
