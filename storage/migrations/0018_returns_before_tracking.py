"""Rentals from before Keyturn tracked returns are brought under its rules.

Before 0016 a rental ended by the clock: at its end the codes went and the deposit hold was
released. Since then a rental is over only once its return is confirmed, and the deposit waits
for that and the damage review. Existing rows would otherwise look like rentals never brought
back (a renter's RETURN would find one from last year; GPS could "return" it). So:

- a completed rental that never had a return check (it ended by the old rules) counts as
  returned at its end, as the old rules had it; if its deposit is somehow still held, the
  damage review that releases it is due at once;
- a rental still under way gets the return check at its end plus the item's grace, as one
  confirmed today does;
- a deposit still held gets the look a day before its hold lapses (Stripe holds last about 7
  days), so it is replaced by the card on file rather than lost.

Timer kinds and keys are the ones the flows use (``flows.returns``, ``flows.gps.return_check``,
``flows.booking.common``); written out here so that this migration keeps meaning what it meant.
"""

from datetime import UTC, datetime, timedelta

from tortoise import migrations
from tortoise.migrations import operations as ops

HOLD_LAPSE_CHECK = timedelta(days=6)


def _postgres(client) -> bool:
    return client.capabilities.dialect == "postgres"


def _moment(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _add_timer(client, kind: str, key: str, booking_id: int, due_at: datetime, now) -> None:
    if _postgres(client):
        statement = (
            "INSERT INTO timer (kind, key, payload, due_at, state, attempts, claimed_by,"
            " created_at) VALUES ($1, $2, jsonb_build_object('booking', $3::bigint), $4,"
            " 'pending', 0, '', $5) ON CONFLICT (key) DO NOTHING"
        )
    else:
        statement = (
            "INSERT INTO timer (kind, key, payload, due_at, state, attempts, claimed_by,"
            " created_at) VALUES (?, ?, json_object('booking', ?), ?, 'pending', 0, '', ?)"
            " ON CONFLICT (key) DO NOTHING"
        )
    await client.execute_query(statement, [kind, key, booking_id, due_at, now])


def _never_checked(alias: str = "b") -> str:
    return f"NOT EXISTS (SELECT 1 FROM timer t WHERE t.key = 'return-check:' || {alias}.reference)"


async def forward(apps, schema_editor):
    client = schema_editor.client
    now = datetime.now(UTC)
    held = await client.execute_query_dict(
        "SELECT b.id, b.reference FROM booking b JOIN payment p ON p.booking_id = b.id"
        " WHERE b.state = 'completed' AND b.returned_at IS NULL AND p.purpose = 'deposit'"
        f" AND p.status = 'held' AND {_never_checked()}"
    )
    for row in held:
        await _add_timer(
            client,
            "booking.damage_review",
            f"damage-review:{row['reference']}",
            row["id"],
            now,
            now,
        )
    await client.execute_query(
        "UPDATE booking SET returned_at = end_at,"
        " return_checklist_at = COALESCE(return_checklist_at, end_at)"
        f" WHERE state = 'completed' AND returned_at IS NULL AND {_never_checked('booking')}"
    )
    under_way = await client.execute_query_dict(
        "SELECT b.id, b.reference, b.end_at, a.late_grace_minutes FROM booking b"
        " JOIN asset a ON a.id = b.asset_id WHERE b.state IN ('confirmed', 'active')"
        f" AND b.returned_at IS NULL AND {_never_checked()}"
    )
    for row in under_way:
        due = _moment(row["end_at"]) + timedelta(minutes=int(row["late_grace_minutes"]))
        key = f"return-check:{row['reference']}"
        await _add_timer(client, "booking.return_check", key, row["id"], due, now)
    holds = await client.execute_query_dict(
        "SELECT b.id, b.reference, p.created_at FROM booking b JOIN payment p"
        " ON p.booking_id = b.id WHERE p.purpose = 'deposit' AND p.status = 'held'"
        " AND b.state IN ('confirmed', 'active', 'completed') AND NOT EXISTS"
        " (SELECT 1 FROM timer t WHERE t.key = 'hold-lapse:' || b.reference)"
    )
    for row in holds:
        due = _moment(row["created_at"]) + HOLD_LAPSE_CHECK
        key = f"hold-lapse:{row['reference']}"
        await _add_timer(client, "booking.deposit_hold_lapse", key, row["id"], due, now)


class Migration(migrations.Migration):
    dependencies = [("models", "0017_condition_photo_retention")]

    initial = False

    operations = [ops.RunPython(forward, ops.RunPython.noop)]
