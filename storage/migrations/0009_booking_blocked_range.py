"""A booking takes its item for its whole access window, buffers included (the turnaround).

The blocked range is stored with the booking (``blocked_from``, ``blocked_until``, UTC), so a
location's buffers changed later neither reopen nor double-book it, and the overlap constraint
(PostgreSQL) and triggers (SQLite) of 0002 move onto it. Existing bookings get the buffers in
force (the item's own, else its location's). Back-to-back bookings made before this rule would
overlap by their buffers: where that happens the earlier one's buffer after stops at the later
one's start and the later one's range begins where the earlier one's ends, neither cut into its
rental, so the upgrade never fails on them (their codes already on the locks stay as they are).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from storage.migrations._filled import AddFilledField

_BEFORE = importlib.import_module("storage.migrations.0002_booking_no_overlap")
HOLDING = _BEFORE.HOLDING
#: What rows hold for the instant between adding the columns and filling them.
PLACEHOLDER = datetime(1970, 1, 1, tzinfo=UTC)

POSTGRES_FORWARD = [
    "ALTER TABLE booking DROP CONSTRAINT booking_no_overlap",
    "ALTER TABLE booking ADD CONSTRAINT booking_blocked_covers_rental"
    " CHECK (blocked_from <= start_at AND end_at <= blocked_until)",
    "ALTER TABLE booking ADD CONSTRAINT booking_no_overlap EXCLUDE USING gist "
    "(asset_id WITH =, tstzrange(blocked_from, blocked_until, '[)') WITH &&) "
    f"WHERE (state IN {HOLDING})",
]
POSTGRES_BACKWARD = [
    "ALTER TABLE booking DROP CONSTRAINT booking_no_overlap",
    "ALTER TABLE booking DROP CONSTRAINT booking_blocked_covers_rental",
    _BEFORE.POSTGRES_FORWARD[-1],
]

_SQLITE_CHECK = f"""
    SELECT RAISE(ABORT, 'booking_no_overlap')
    WHERE NEW.state IN {HOLDING} AND EXISTS (
        SELECT 1 FROM booking b
        WHERE b.asset_id = NEW.asset_id AND b.id <> NEW.id AND b.state IN {HOLDING}
          AND julianday(b.blocked_from) < julianday(NEW.blocked_until)
          AND julianday(NEW.blocked_from) < julianday(b.blocked_until));
    SELECT RAISE(ABORT, 'booking_end_after_start')
    WHERE julianday(NEW.end_at) <= julianday(NEW.start_at);
    SELECT RAISE(ABORT, 'booking_blocked_covers_rental')
    WHERE julianday(NEW.blocked_from) > julianday(NEW.start_at)
       OR julianday(NEW.blocked_until) < julianday(NEW.end_at);
"""
SQLITE_FORWARD = [
    "DROP TRIGGER IF EXISTS booking_no_overlap_insert",
    "DROP TRIGGER IF EXISTS booking_no_overlap_update",
    f"CREATE TRIGGER booking_no_overlap_insert BEFORE INSERT ON booking BEGIN {_SQLITE_CHECK} END",
    "CREATE TRIGGER booking_no_overlap_update BEFORE UPDATE OF asset_id, start_at, end_at,"
    f" blocked_from, blocked_until, state ON booking BEGIN {_SQLITE_CHECK} END",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS booking_no_overlap_insert",
    "DROP TRIGGER IF EXISTS booking_no_overlap_update",
]

_ROWS = """
    SELECT b.id, b.asset_id, b.state, b.start_at, b.end_at,
           COALESCE(a.buffer_before_minutes, l.buffer_before_minutes) AS before_minutes,
           COALESCE(a.buffer_after_minutes, l.buffer_after_minutes) AS after_minutes
    FROM booking b JOIN asset a ON a.id = b.asset_id JOIN location l ON l.id = a.location_id
    ORDER BY b.asset_id, b.start_at, b.id
"""


def _instant(value):
    """A stored time as an aware UTC datetime (SQLite hands back text)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def blocked_ranges(rows):
    """``{booking id: (blocked_from, blocked_until)}`` for rows ordered by asset then start.

    Slot-holding bookings of one item never overlapped by their rentals; their buffers may. An
    earlier booking keeps its buffer after up to the next one's start, and the next one's buffer
    before starts no earlier than where that range ends."""
    ranges = {}
    holding = {state.strip("'") for state in HOLDING.strip("()").split(",")}
    previous = None  # (asset id, blocked_until) of the last slot-holding booking
    held = [row for row in rows if row["state"] in holding]
    following = {row["id"]: nxt for row, nxt in zip(held, held[1:], strict=False)}
    for row in rows:
        start, end = _instant(row["start_at"]), _instant(row["end_at"])
        blocked_from = start - timedelta(minutes=row["before_minutes"] or 0)
        blocked_until = end + timedelta(minutes=row["after_minutes"] or 0)
        if row["state"] in holding:
            nxt = following.get(row["id"])
            if nxt is not None and nxt["asset_id"] == row["asset_id"]:
                blocked_until = max(end, min(blocked_until, _instant(nxt["start_at"])))
            if previous is not None and previous[0] == row["asset_id"]:
                blocked_from = min(start, max(blocked_from, previous[1]))
            previous = (row["asset_id"], blocked_until)
        ranges[row["id"]] = (blocked_from, blocked_until)
    return ranges


async def fill(apps, schema_editor):
    client = schema_editor.client
    postgres = client.capabilities.dialect == "postgres"
    rows = await client.execute_query_dict(_ROWS)
    ranges = blocked_ranges(rows)
    if not ranges:
        return

    def stored(moment):
        return moment if postgres else moment.isoformat(" ")

    update = (
        "UPDATE booking SET blocked_from = $1, blocked_until = $2 WHERE id = $3"
        if postgres
        else "UPDATE booking SET blocked_from = ?, blocked_until = ? WHERE id = ?"
    )
    await client.execute_many(
        update, [[stored(a), stored(b), booking] for booking, (a, b) in ranges.items()]
    )


async def _run(schema_editor, postgres, sqlite):
    dialect = schema_editor.client.capabilities.dialect
    for statement in postgres if dialect == "postgres" else sqlite:
        await schema_editor.client.execute_query(statement)


async def guard_blocked_range(apps, schema_editor):
    await _run(schema_editor, POSTGRES_FORWARD, SQLITE_FORWARD)


async def unguard_blocked_range(apps, schema_editor):
    await _run(schema_editor, POSTGRES_BACKWARD, SQLITE_BACKWARD)


async def nothing(apps, schema_editor):
    return None


async def restore_sqlite_triggers(apps, schema_editor):
    """Going back: SQLite rebuilds the table to drop the columns, which drops its triggers."""
    await _run(schema_editor, [], _BEFORE.SQLITE_FORWARD)


class Migration(migrations.Migration):
    dependencies = [("models", "0008_access_code_booking_index")]

    initial = False

    operations = [
        ops.RunPython(nothing, restore_sqlite_triggers),
        AddFilledField(
            model_name="Booking",
            name="blocked_from",
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
            fill=PLACEHOLDER,
        ),
        AddFilledField(
            model_name="Booking",
            name="blocked_until",
            field=fields.DatetimeField(auto_now=False, auto_now_add=False),
            fill=PLACEHOLDER,
        ),
        ops.RunPython(fill, nothing),
        ops.RunPython(guard_blocked_range, unguard_blocked_range),
    ]
