"""Migrations must be safe to apply while the previous release still serves (README "Upgrades").

During a rolling upgrade the migration Job runs first and old instances keep serving on the new
schema until they are replaced. So a migration may only add: new tables, nullable columns (or
columns with a database-side default), indexes, constraints. Removing or renaming a column or a
table, or tightening a column, is done in two releases: first stop using it, then remove it.
Data migrations (RunPython, RunSQL) need a reviewed entry in REVIEWED saying why they are safe.
"""

from __future__ import annotations

from django.db import models
from django.db.migrations import Migration
from django.db.migrations import operations as ops
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED

OUR_APPS = {"accounts", "tokens", "authsessions", "audit", "oauth", "authserver"}

# (app, migration name) -> why it is safe while older code serves.
REVIEWED = {
    ("accounts", "0002_cache_table"): "creates the database cache table; touches nothing else",
    ("authsessions", "0001_moved_from_tokens"): "state only (the tables keep their names); the "
    "data step renames two content types, which old code never reads by app label",
    ("tokens", "0003_session_tree"): "AlterField only adds a revoke_reason choice (no schema "
    "change); the new parent column is nullable",
    ("oauth", "0005_client_tokens_valid_after"): "AlterField only changes the help text of "
    "audiences (no schema change); the new tokens_valid_after column is nullable",
    ("audit", "0002_authevent_partitioned"): "PostgreSQL only, no row copied: indexes are built "
    "CONCURRENTLY and a CHECK (occurred_at < next week boundary + margin) is validated while "
    "inserts go on; then one short locked transaction (lock_timeout, retried) renames the table "
    "and attaches it, unscanned, as the legacy partition of a new partitioned audit_authevent "
    "with the same columns, ids and indexes: the previous release's INSERTs and SELECTs by the "
    "table name keep working (tests/audit/test_partition_migration.py)",
    ("authsessions", "0002_refresh_in_session"): "nullable columns; the index is built "
    "CONCURRENTLY; the dropped idle_expires_at index only served the purge (the previous "
    "release's purge still works, slower); fillfactor applies to new pages, no rewrite",
    ("authsessions", "0003_references_without_constraints"): "AlterField only drops the FOREIGN "
    "KEY constraints of references to a session (db_constraint=False); the previous release "
    "never relied on them failing, and its deletes go through the ORM, which applies on_delete",
    ("tokens", "0006_restore_marker"): "a new table; the data step inserts its one row (the "
    "table's own OID, PostgreSQL only), which the previous release never reads",
    ("oauth", "0006_code_sessions_without_constraints"): "AlterField only drops the FOREIGN KEY "
    "constraints of the code's session links (db_constraint=False), as authsessions 0003",
}

UNSAFE = (
    ops.RemoveField,
    ops.DeleteModel,
    ops.RenameField,
    ops.RenameModel,
    ops.AlterModelTable,
    ops.AlterField,
    ops.RunPython,
    ops.RunSQL,
)


def _flattened(operations):
    """The operations that touch the database: those inside SeparateDatabaseAndState count as
    their database_operations (its state_operations change no table)."""
    for op in operations:
        if isinstance(op, ops.SeparateDatabaseAndState):
            yield from _flattened(op.database_operations)
        else:
            yield op


def migration_problems(migrations: dict) -> list[str]:
    """Operations in {(app, name): Migration} that could break the previous release."""
    problems = []
    for (app, name), migration in sorted(migrations.items()):
        if app not in OUR_APPS or (app, name) in REVIEWED:
            continue
        created = {op.name_lower for op in migration.operations if isinstance(op, ops.CreateModel)}
        for op in _flattened(migration.operations):
            label = f"{app}.{name}: {op.describe()}"
            if isinstance(op, UNSAFE):
                problems.append(label)
            elif isinstance(op, ops.AddField) and op.model_name_lower not in created:
                field = op.field
                if not field.null and field.db_default is NOT_PROVIDED:
                    problems.append(f"{label} is NOT NULL without db_default")
    return problems


def test_every_migration_is_additive_or_reviewed():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    assert migration_problems(loader.disk_migrations) == []


def test_the_rule_catches_removals_and_not_null_columns():
    def migration(*operations):
        return type("Migration", (Migration,), {"operations": list(operations)})("m", "tokens")

    found = migration_problems(
        {
            ("tokens", "9001_drop"): migration(ops.RemoveField("session", "ip")),
            ("tokens", "9002_required"): migration(
                ops.AddField("session", "flag", models.BooleanField(default=False))
            ),
            ("tokens", "9003_fine"): migration(
                ops.AddField("session", "note", models.TextField(null=True)),
                ops.AddField("session", "tier", models.IntegerField(db_default=0)),
            ),
        }
    )
    assert len(found) == 2
    assert found[0].startswith("tokens.9001_drop: Remove field ip")
    assert "NOT NULL without db_default" in found[1]


def test_reviewed_entries_name_existing_migrations():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    assert set(REVIEWED) <= set(loader.disk_migrations)
