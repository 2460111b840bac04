"""Conversations moved out of a dialog state from outside the renter's turn: a question
Keyturn asks on its own supersedes one the renter left open."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import sql

_MOVE_STATES = (
    "UPDATE conversation SET state = $1, version = version + 1, updated_at = $2"
    " WHERE renter_id = $3 AND state IN ({states})"
)


async def move_states(
    conn: BaseDBAsyncClient,
    renter_id: int,
    *,
    from_states: Sequence[str],
    to: str,
    at: datetime,
) -> int:
    """Move every conversation of the renter that is in one of ``from_states`` to ``to``, in
    one statement; returns how many moved. Each moved conversation's version is bumped, so a
    turn computed from its old state is recomputed instead of saved."""
    if not from_states:
        return 0
    placeholders = ", ".join(f"${n}" for n in range(4, 4 + len(from_states)))
    moved, _ = await conn.execute_query(
        sql(_MOVE_STATES.format(states=placeholders)), [to, at, renter_id, *from_states]
    )
    return int(moved)
