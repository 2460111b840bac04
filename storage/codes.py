"""Access codes' states and the one way a code changes state.

``CODE_TRANSITIONS`` is the declared table: for each state, the states a code may go to next.
``move_code`` is the only writer of ``AccessCode.state``: it checks the table and issues the
guarded UPDATE (``WHERE id = ? AND state IN (allowed predecessors)``), so a code that moved on
meanwhile (revoked while the lock answered, confirmed by a webhook first) stays as it is, and the
caller learns so from the result instead of overwriting it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import connection, sql
from storage.models import AccessCode, AccessCodeState

S = AccessCodeState

#: Where a code may go from each state. ``programming`` may follow itself: a retried set
#: attempt, and the lock's answer that it is still setting the code, keep it programming.
CODE_TRANSITIONS: Mapping[AccessCodeState, frozenset[AccessCodeState]] = MappingProxyType(
    {
        # Programmed when due, or revoked first.
        S.PENDING: frozenset({S.PROGRAMMING, S.REMOVING}),
        # Set on the lock, refused, lost by the lock (programmed afresh), revoked, or taken
        # off by the lock itself at its end.
        S.PROGRAMMING: frozenset(
            {S.PROGRAMMING, S.SET, S.FAILED, S.PENDING, S.REMOVING, S.REMOVED}
        ),
        # Setting a moved window again, refused it, lost by the lock, revoked, ended on the lock.
        S.SET: frozenset({S.PROGRAMMING, S.FAILED, S.PENDING, S.REMOVING, S.REMOVED}),
        # Proved off the lock (or, for an offline code, left to lapse by itself).
        S.REMOVING: frozenset({S.REMOVED}),
        S.REMOVED: frozenset(),
        # Tried again with a fresh PIN, revoked, or given up for an ordinary code.
        S.FAILED: frozenset({S.PENDING, S.REMOVING, S.REMOVED}),
    }
)


class IllegalTransition(Exception):
    """A state change the table does not allow was asked for."""

    def __init__(self, froms: Collection[AccessCodeState], to: AccessCodeState) -> None:
        names = ", ".join(sorted(froms))
        super().__init__(f"an access code cannot go from {names} to {to}")


def predecessors(to: AccessCodeState) -> frozenset[AccessCodeState]:
    """The states a code may reach ``to`` from."""
    return frozenset(state for state, nexts in CODE_TRANSITIONS.items() if to in nexts)


async def move_code(
    conn: BaseDBAsyncClient | None,
    code_id: int,
    *,
    to: AccessCodeState,
    expect: AccessCodeState | Collection[AccessCodeState] | None = None,
    where: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Move code ``code_id`` to ``to`` (setting ``fields`` with it) if it is in one of the
    ``expect`` states (by default, any the table allows) and matches ``where``; True when it
    moved. ``IllegalTransition`` for an ``expect`` state the table does not let reach ``to``:
    nothing is changed then."""
    allowed = predecessors(to)
    if expect is None:
        froms = allowed
    else:
        froms = frozenset({expect} if isinstance(expect, AccessCodeState) else expect)
        if not froms <= allowed:
            raise IllegalTransition(froms - allowed, to)
    if not froms:
        raise IllegalTransition(froms, to)
    query = AccessCode.filter(id=code_id, state__in=sorted(froms), **dict(where or {}))
    if conn is not None:
        query = query.using_db(conn)
    return await query.update(state=to, **fields) > 0


_SEALED_PINS_OF_RENTER = (
    "SELECT ac.pin_encrypted FROM access_code ac JOIN booking b ON b.id = ac.booking_id"
    " WHERE b.renter_id = $1 AND ac.state IN ({states})"
)


async def sealed_pins_of_renter(renter_id: int, states: Collection[AccessCodeState]) -> list[str]:
    """The sealed PINs of the renter's booking codes in these states, in one hand-written query
    (asked on every turn whose text has enough digits for a PIN)."""
    if not states:
        return []
    placeholders = ", ".join(f"${n}" for n in range(2, len(states) + 2))
    rows = await connection().execute_query_dict(
        sql(_SEALED_PINS_OF_RENTER.format(states=placeholders)),
        [renter_id, *(state.value for state in states)],
    )
    return [str(row["pin_encrypted"]) for row in rows]
