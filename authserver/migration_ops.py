"""Migration operations that keep a busy PostgreSQL serving while they run.

`AddIndexOnline` builds an index with CREATE INDEX CONCURRENTLY on PostgreSQL, which takes no
lock that blocks writes (a plain CREATE INDEX blocks every insert and update of the table for the
whole build: minutes on a table of millions of sessions). Other databases (SQLite, for
`make run`) build it the ordinary way. A migration using it must say `atomic = False`.

`TableStorageParameters` sets storage parameters (fillfactor) on PostgreSQL; they apply to pages
written from then on, so the table is not rewritten and no lock is held beyond the catalog update.
"""

from __future__ import annotations

from django.db.migrations.operations import AddIndex
from django.db.migrations.operations.base import Operation


class AddIndexOnline(AddIndex):
    def describe(self) -> str:
        return f"Create index {self.index.name} on {self.model_name} (concurrently on PostgreSQL)"

    def _concurrently(self, schema_editor) -> bool:
        return schema_editor.connection.vendor == "postgresql"

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if self._concurrently(schema_editor):
                schema_editor.add_index(model, self.index, concurrently=True)
            else:
                schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if self._concurrently(schema_editor):
                schema_editor.remove_index(model, self.index, concurrently=True)
            else:
                schema_editor.remove_index(model, self.index)


class TableStorageParameters(Operation):
    """ALTER TABLE ... SET (name = value, ...) on PostgreSQL; nothing elsewhere."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, model_name: str, parameters: dict[str, int]):
        self.model_name = model_name
        self.parameters = parameters

    def deconstruct(self):
        return self.__class__.__name__, [self.model_name, self.parameters], {}

    def describe(self) -> str:
        return f"Set storage parameters {self.parameters} on {self.model_name} (PostgreSQL)"

    def state_forwards(self, app_label, state) -> None:
        pass

    def _alter(self, app_label, schema_editor, state, reset: bool) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        model = state.apps.get_model(app_label, self.model_name)
        table = schema_editor.quote_name(model._meta.db_table)
        if reset:
            names = ", ".join(self.parameters)
            schema_editor.execute(f"ALTER TABLE {table} RESET ({names})")
        else:
            values = ", ".join(f"{name} = {int(value)}" for name, value in self.parameters.items())
            schema_editor.execute(f"ALTER TABLE {table} SET ({values})")

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._alter(app_label, schema_editor, to_state, reset=False)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._alter(app_label, schema_editor, from_state, reset=True)
