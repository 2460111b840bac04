"""A device's pace: the slots in which code creations and updates may be sent to it.

Each lock row keeps, per kind of call, the slots taken lately (the last ``limit``, in order)
and the earliest the next may be (after a provider's 429). Taking a slot reads and writes them
under the lock row's row lock and commits at once, so every worker shares one pace. The row
lock is ``FOR NO KEY UPDATE``: planners' ``FOR KEY SHARE`` (``storage.lock_rows``) and the
pace never wait for each other. A new slot
is never before the last one taken, nor within ``window`` of the slot ``limit`` places back:
no ``window`` ever holds more than ``limit`` slots.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise.transactions import in_transaction

from storage.models import Lock


class PacedCall(StrEnum):
    CREATION = "creation"
    UPDATE = "update"


def _moments(values: object) -> list[datetime]:
    return (
        [datetime.fromisoformat(v) for v in values if isinstance(v, str)]
        if isinstance(values, list)
        else []
    )


def _pace_of(lock: Lock, call: PacedCall) -> tuple[list[datetime], datetime | None]:
    entry = (lock.code_pace or {}).get(call)
    if not isinstance(entry, dict):
        return [], None
    not_before = entry.get("not_before")
    return _moments(entry.get("slots")), (
        datetime.fromisoformat(not_before) if isinstance(not_before, str) else None
    )


def _with_pace(
    lock: Lock, call: PacedCall, slots: list[datetime], not_before: datetime | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"slots": [slot.isoformat() for slot in slots]}
    if not_before is not None:
        entry["not_before"] = not_before.isoformat()
    return {**(lock.code_pace or {}), str(call): entry}


async def take_slot(
    lock_id: int, call: PacedCall, *, now: datetime, limit: int, window: timedelta
) -> datetime:
    """Take the device's next slot for one ``call``: ``now`` when it has room, else the
    earliest instant that keeps ``limit`` slots in any ``window``."""
    async with in_transaction() as conn:
        lock = await Lock.filter(id=lock_id).using_db(conn).select_for_update(no_key=True).first()
        if lock is None:
            return now  # the lock is gone: nothing to pace
        slots, not_before = _pace_of(lock, call)
        slot = max([now, *slots[-1:], *([not_before] if not_before else [])])
        if len(slots) >= limit:
            slot = max(slot, slots[-limit] + window)
        slots = [*slots, slot][-limit:]
        # Slots never go back, so a floor once reached is kept by the slots themselves.
        pace = _with_pace(lock, call, slots, None)
        await Lock.filter(id=lock_id).using_db(conn).update(code_pace=pace)
    return slot


async def hold_off(lock_id: int, call: PacedCall, until: datetime) -> None:
    """The provider refused for its limit: no slot of the device starts before ``until``."""
    async with in_transaction() as conn:
        lock = await Lock.filter(id=lock_id).using_db(conn).select_for_update(no_key=True).first()
        if lock is None:
            return
        slots, not_before = _pace_of(lock, call)
        if not_before is None or not_before < until:
            pace = _with_pace(lock, call, slots, until)
            await Lock.filter(id=lock_id).using_db(conn).update(code_pace=pace)
