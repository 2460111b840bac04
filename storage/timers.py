"""Durable timers: rows with ``due_at``, claimed like outbox effects so each fires once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from storage.models import Timer, TimerState


async def set_timer(
    conn: BaseDBAsyncClient,
    *,
    kind: str,
    due_at: datetime,
    now: datetime,
    key: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Timer:
    """Set a timer; a pending timer with the same key is moved instead of doubled."""
    if key is not None:
        existing = await Timer.filter(key=key).using_db(conn).select_for_update().first()
        if existing is not None:
            existing.kind = kind
            existing.due_at = due_at
            existing.payload = payload or {}
            existing.claimed_until = None
            await existing.save(using_db=conn)
            return existing
    return await Timer.create(
        kind=kind, key=key, due_at=due_at, payload=payload or {}, created_at=now, using_db=conn
    )


async def postpone_timer(conn: BaseDBAsyncClient | None, key: str, until: datetime) -> bool:
    """Move a pending timer to ``until`` when it is due sooner; no timer is created."""
    query = Timer.filter(key=key, state=TimerState.PENDING, due_at__lt=until)
    if conn is not None:
        query = query.using_db(conn)
    return await query.update(due_at=until) > 0


async def cancel_timer(conn: BaseDBAsyncClient, key: str) -> bool:
    changed = (
        await Timer.filter(key=key, state=TimerState.PENDING)
        .using_db(conn)
        .update(state=TimerState.CANCELLED, key=None)
    )
    return changed > 0


def _due(now: datetime) -> Q:
    return Q(state=TimerState.PENDING, due_at__lte=now) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)
    )


async def claim_due_timers(
    now: datetime, *, limit: int, lease: timedelta, worker: str
) -> list[Timer]:
    """Claim up to ``limit`` due timers for ``worker`` for the length of ``lease``."""
    async with in_transaction() as conn:
        rows = (
            await Timer.filter(_due(now))
            .order_by("due_at", "id")
            .limit(limit)
            .select_for_update(skip_locked=True)
            .using_db(conn)
        )
        if not rows:
            return []
        await (
            Timer.filter(id__in=[row.id for row in rows])
            .using_db(conn)
            .update(claimed_until=now + lease, attempts=F("attempts") + 1, claimed_by=worker)
        )
    for row in rows:
        row.attempts += 1
        row.claimed_until = now + lease
        row.claimed_by = worker
    return rows


class TimerTakenOver(RuntimeError):
    """The timer's lease ran out while it fired and another claim holds it now."""


async def finish_timer(conn: BaseDBAsyncClient, timer: Timer, now: datetime) -> None:
    """Mark the claimed timer done in the handler's transaction.

    Raises ``TimerTakenOver`` (rolling the transaction back) when another claim holds the timer
    now: that claim fires it and stages its outcome. A timer moved to a new time (or cancelled)
    while it fired keeps its new state, and this firing's outcome is still committed: handlers
    write some state of their own as they run (a booking moved on), and dropping the
    outcome that goes with it would strand that state. Each handler checks the state it acts on,
    so the firing at the new time finds nothing left to do, or does what is due then."""
    done = await (
        Timer.filter(id=timer.id, state=TimerState.PENDING, attempts=timer.attempts)
        .filter(due_at=timer.due_at)
        .using_db(conn)
        .update(state=TimerState.DONE, fired_at=now, key=None, claimed_until=None)
    )
    if done:
        return
    row = await Timer.filter(id=timer.id).using_db(conn).first()
    if row is not None and row.attempts != timer.attempts:
        raise TimerTakenOver(f"timer {timer.id} was claimed again while it fired")


async def retry_timer(timer: Timer, retry_at: datetime) -> None:
    await Timer.filter(id=timer.id, state=TimerState.PENDING, attempts=timer.attempts).update(
        claimed_until=retry_at
    )


async def release_timers(timers: list[Timer], *, worker: str) -> int:
    """Give back claims ``worker`` holds on timers it has not fired (it is stopping), so they
    fire at once elsewhere or after a restart; a claim taken over since is left as it is."""
    released = 0
    for timer in timers:
        released += await Timer.filter(
            id=timer.id, state=TimerState.PENDING, attempts=timer.attempts, claimed_by=worker
        ).update(claimed_until=None)
    return released


async def next_due_at() -> datetime | None:
    """When the earliest pending timer falls due (or its claim runs out)."""
    row = await Timer.filter(state=TimerState.PENDING).order_by("due_at").first()
    if row is None:
        return None
    if row.claimed_until is not None and row.claimed_until > row.due_at:
        return row.claimed_until
    return row.due_at


async def ensure_timer(*, kind: str, key: str, due_at: datetime, now: datetime) -> bool:
    """Set a keyed timer unless one is already pending (recurring work set at start-up)."""
    if await Timer.filter(key=key, state=TimerState.PENDING).exists():
        return False
    try:
        async with in_transaction() as conn:
            await set_timer(conn, kind=kind, due_at=due_at, now=now, key=key)
    except IntegrityError:
        return False  # another worker starting at the same moment set it first
    return True
