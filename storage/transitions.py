"""Declared state machines: each table is written once, and a move is one guarded conditional
UPDATE (``WHERE id = ? AND <state> IN <the target's predecessors>``).

A move the table does not allow from any state raises ``IllegalTransition`` and changes
nothing; a legal move whose row is (no longer) in one of the target's predecessors changes
nothing and returns False, so a race between two writers is settled by the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Generic, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

S = TypeVar("S", bound=StrEnum)


class IllegalTransition(Exception):
    """A state change no declared table allows (or one refused by the row's current state)."""


class Transitions(Generic[S]):
    """A table of allowed moves (state → next states) over one model's state column."""

    def __init__(
        self, model: type[Model], column: str, table: Mapping[S, frozenset[S]], name: str
    ) -> None:
        self.model = model
        self.column = column
        self.table = dict(table)
        self.name = name

    def predecessors(self, to: S) -> frozenset[S]:
        return frozenset(state for state, nexts in self.table.items() if to in nexts)

    def allows(self, was: S | str, to: S) -> bool:
        return any(state == was and to in nexts for state, nexts in self.table.items())

    async def move(
        self,
        conn: BaseDBAsyncClient,
        row_id: int,
        *,
        to: S,
        was: S | str | None = None,
        **fields: Any,
    ) -> bool:
        """Move row ``row_id`` to ``to`` (with ``fields`` set in the same UPDATE) if it is in
        one of ``to``'s predecessors (only ``was``, when given). True when it moved."""
        before = self.predecessors(to) if was is None else {was}
        if not before or (was is not None and not self.allows(was, to)):
            raise IllegalTransition(f"no {self.name} may move from {was or 'any state'} to {to}")
        guard = {"id": row_id, f"{self.column}__in": [str(state) for state in before]}
        updated = await (
            self.model.filter(**guard).using_db(conn).update(**{self.column: to, **fields})
        )
        return int(updated or 0) == 1
