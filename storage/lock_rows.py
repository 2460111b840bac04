"""Locks that are retired while codes are planned on them: the two sides take row locks that
conflict, so a code never lands on a lock retired in the same instant.

Planning a code takes ``FOR KEY SHARE`` on each lock it uses (planners do not wait for each
other); retiring a lock takes ``FOR UPDATE`` first, which waits for every planner holding one. A
planner that comes second sees the lock retired once the retirement commits (PostgreSQL re-checks
the row it waited for), and leaves it out; a retirement that comes second counts the planner's
code and keeps the lock. SQLite runs one transaction at a time, so there the reads alone suffice.
"""

from __future__ import annotations

from collections.abc import Collection

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import dialect


async def usable_locks(conn: BaseDBAsyncClient, lock_ids: Collection[int]) -> set[int]:
    """Of these locks, the ones not retired, held so until the caller's transaction ends."""
    if not lock_ids:
        return set()
    ids = sorted(lock_ids)
    if dialect() == "postgres":
        rows = await conn.execute_query_dict(
            "SELECT id FROM lock WHERE id = ANY($1::int[]) AND retired_at IS NULL"
            " ORDER BY id FOR KEY SHARE",
            [ids],
        )
    else:
        marks = ", ".join("?" for _ in ids)
        rows = await conn.execute_query_dict(
            f"SELECT id FROM lock WHERE id IN ({marks}) AND retired_at IS NULL",  # noqa: S608
            ids,
        )
    return {int(row["id"]) for row in rows}


async def hold_for_retirement(conn: BaseDBAsyncClient, lock_id: int) -> None:
    """Wait for every planner using this lock to commit, and keep new ones waiting until the
    caller's transaction ends."""
    if dialect() == "postgres":
        await conn.execute_query("SELECT id FROM lock WHERE id = $1 FOR UPDATE", [lock_id])
