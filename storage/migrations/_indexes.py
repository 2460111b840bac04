"""Indexes built on a live database (not a migration: the loader skips ``_``).

A migration that adds indexes to tables that may hold millions of rows must not lock them
while it builds: on PostgreSQL each index is built with ``CREATE INDEX CONCURRENTLY``, which
lets renters' turns read and write the table meanwhile and cannot run inside a transaction,
so such a migration declares ``atomic = False`` and its operation ``atomic=False``. A build
that failed half-way leaves an invalid index behind; each index is dropped (concurrently too)
before it is built, so running the migration again finishes the job. SQLite has no concurrent
build and no readers to block beyond the one process: it builds plainly.

Each index is declared once, as its name, table and the text that follows ``ON table``
(columns, method, predicate), with a separate text for SQLite where the two dialects differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.migrations import operations as ops


@dataclass(frozen=True)
class LiveIndex:
    name: str
    table: str
    #: What follows ``ON "table"`` on PostgreSQL: ``(columns)``, ``USING gist (...)``, a
    #: ``WHERE`` predicate.
    postgres: str
    #: The same for SQLite; ``None``: the PostgreSQL text serves, ``""``: no such index there.
    sqlite: str | None = None

    def create(self, dialect: str) -> list[str]:
        if dialect == "postgres":
            return [
                f'DROP INDEX CONCURRENTLY IF EXISTS "{self.name}"',
                f'CREATE INDEX CONCURRENTLY "{self.name}" ON "{self.table}" {self.postgres}',
            ]
        body = self.postgres if self.sqlite is None else self.sqlite
        if not body:
            return []
        return [f'CREATE INDEX IF NOT EXISTS "{self.name}" ON "{self.table}" {body}']

    def drop(self, dialect: str) -> list[str]:
        if dialect == "postgres":
            return [f'DROP INDEX CONCURRENTLY IF EXISTS "{self.name}"']
        return [f'DROP INDEX IF EXISTS "{self.name}"']


def build_live(indexes: Sequence[LiveIndex], *, extensions: Sequence[str] = ()) -> ops.RunPython:
    """The operation that builds ``indexes`` (and first creates the PostgreSQL ``extensions``
    they need) outside any transaction; going back drops them."""

    async def forward(apps: Any, schema_editor: Any) -> None:
        client = schema_editor.client
        dialect = client.capabilities.dialect
        if dialect == "postgres":
            for extension in extensions:
                await client.execute_script(f"CREATE EXTENSION IF NOT EXISTS {extension}")
        for index in indexes:
            for statement in index.create(dialect):
                await client.execute_script(statement)

    async def backward(apps: Any, schema_editor: Any) -> None:
        client = schema_editor.client
        for index in reversed(indexes):
            for statement in index.drop(client.capabilities.dialect):
                await client.execute_script(statement)

    return ops.RunPython(forward, backward, atomic=False)
