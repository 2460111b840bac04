"""What keeps an item from being taken between two instants, read in one statement.

Every quote, YES and extension asks it, so it is written by hand (Tortoise built two queries
anew on every call, and that cost more than running them) and shaped for the indexes of
migration 0013:

- bookings of the item whose stored range reaches into the time, read by the item and the end
  of their range (``booking_asset_until``: the bookings of the past are never visited), that
  hold their slot or were cancelled while an offline code of theirs could not be taken off the
  lock (it works until its end, so that time is not sold again);
- and, as a query of its own rather than an ``OR`` across a join, such offline codes on the
  item's own locks, whose window is in whole hours and may reach past their booking's range
  (``access_code_offline_until``, or the item's cancelled bookings).
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from storage import db
from storage.models import SLOT_HOLDING_STATES, BookingState

_HOLDING = ", ".join(f"'{state.value}'" for state in SLOT_HOLDING_STATES)
_CANCELLED = f"'{BookingState.CANCELLED.value}'"

#: The ranges taken between $2 and $3 on item $1, but booking $4's own (0: none). Each
#: placeholder appears once, in order, as ``storage.db.sql`` needs for SQLite.
_TAKEN = f"""
SELECT b.blocked_from AS taken_from, b.blocked_until AS taken_until
FROM booking b
WHERE b.asset_id = $1 AND b.blocked_until > $2 AND b.blocked_from < $3 AND b.id <> $4
  AND (b.state IN ({_HOLDING})
       OR (b.state = {_CANCELLED} AND EXISTS (
           SELECT 1 FROM access_code bc
           WHERE bc.booking_id = b.id AND bc.offline AND bc.provider_ref IS NOT NULL)))
UNION ALL
SELECT c.starts_at, c.ends_at
FROM access_code c
JOIN booking cb ON cb.id = c.booking_id
JOIN lock l ON l.id = c.lock_id
WHERE c.offline AND c.ends_at > $5 AND c.starts_at < $6 AND c.provider_ref IS NOT NULL
  AND NOT l.shared AND cb.asset_id = $7 AND cb.state = {_CANCELLED} AND cb.id <> $8
"""  # noqa: S608 (only this module's constants are joined in)


async def taken_ranges(
    asset_id: int,
    starts: datetime,
    ends: datetime,
    *,
    ignore: int | None = None,
    first_only: bool = False,
    conn: BaseDBAsyncClient | None = None,
) -> list[tuple[datetime, datetime]]:
    """The ranges that keep item ``asset_id`` from being taken between ``starts`` and
    ``ends`` (booking ``ignore``'s own excepted); with ``first_only``, at most one: whether
    there is any."""
    client = conn or db.connection()
    statement = _TAKEN + (" LIMIT 1" if first_only else "")
    other = ignore or 0
    rows = await client.execute_query_dict(
        db.sql(statement), [asset_id, starts, ends, other, starts, ends, asset_id, other]
    )
    return [(_instant(row["taken_from"]), _instant(row["taken_until"])) for row in rows]


def _instant(value: datetime | str) -> datetime:
    """A stored time as an aware datetime (SQLite hands back its text)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
