"""A column added to a table that already has rows (not a migration: the loader skips ``_``)."""

from __future__ import annotations

from typing import Any

from tortoise.fields.base import DB_DEFAULT_NOT_SET
from tortoise.migrations import operations as ops


class AddFilledField(ops.AddField):
    """``AddField`` for a NOT NULL column on a table that may hold rows.

    Added plainly, PostgreSQL refuses a NOT NULL column without a default on a table with rows,
    so upgrading a running database would fail. The column is added with the field's own default
    as its database default, which fills the rows already there; on PostgreSQL that default is
    then dropped, so the schema is the one the model describes (SQLite cannot drop a default and
    keeps one equal to the model's).

    A column without a default that a later step of the same migration computes row by row
    takes ``fill`` instead: a placeholder the rows hold only until that step (SQLite keeps it
    as the column's default, so a check of the values must refuse it).
    """

    def __init__(
        self, model_name: str, name: str, field: Any, fill: Any = DB_DEFAULT_NOT_SET
    ) -> None:
        super().__init__(model_name, name, field)
        self.fill = fill

    async def database_forward(
        self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None
    ) -> None:
        if not state_editor:
            return
        model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
        field = model._meta.fields_map[self.name]
        fill = self.fill
        if fill is DB_DEFAULT_NOT_SET:
            fill = field.default() if callable(field.default) else field.default
        field.db_default = fill
        try:
            await state_editor.add_field(model, self.name)
        finally:
            field.db_default = DB_DEFAULT_NOT_SET
        if state_editor.DIALECT == "postgres":
            column = model._meta.fields_db_projection[self.name]
            await state_editor._run_sql(
                f'ALTER TABLE "{model._meta.db_table}" ALTER COLUMN "{column}" DROP DEFAULT'
            )
