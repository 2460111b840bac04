"""Every lookup a renter's turn, a worker or an operator makes is served by an index, so a
business with years of bookings and messages answers as fast as on its first day.

Built without locking the tables (``CREATE INDEX CONCURRENTLY`` on PostgreSQL, outside a
transaction): a running Keyturn keeps serving renters while it upgrades.

- availability: the bookings of an item whose stored range ends after a time (the bookings
  of the past are never read), and the offline codes still working after a time;
- the renter's bookings, newest first (``/find``, the unpaid-bookings limit, "my booking");
- ``/today``: bookings starting or ending in a day;
- ``/find`` by part of a name or a phone number (trigram indexes, PostgreSQL);
- ``/audit``: a subject's events by time;
- a conversation's messages; a sent message by the provider's id (status callbacks);
- a booking's payments, extensions and identity checks; a renter's conversations and checks;
  the conversation of an ops topic;
- a lock's codes, and a code by the provider's id on its lock (lock events); the lock's
  items; a staff member's codes; a verification session by the provider's id;
- a simulated lock's keypad log.
"""

import importlib

from tortoise import migrations
from tortoise.migrations import operations as ops

from storage.migrations._indexes import LiveIndex, build_live

_RANGES = importlib.import_module("storage.migrations.0009_booking_blocked_range")

INDEXES = [
    LiveIndex("booking_asset_until", "booking", "(asset_id, blocked_until)"),
    LiveIndex("booking_renter_start", "booking", "(renter_id, start_at)"),
    LiveIndex("booking_start", "booking", "(start_at)"),
    LiveIndex("booking_end", "booking", "(end_at)"),
    LiveIndex("access_code_offline_until", "access_code", "(offline, ends_at)"),
    LiveIndex("access_code_lock_ref", "access_code", "(lock_id, provider_ref)"),
    LiveIndex("access_code_staff", "access_code", "(staff_id)"),
    LiveIndex(
        "renter_name_trigram",
        "renter",
        "USING gin ((UPPER(CAST(name AS VARCHAR))) gin_trgm_ops)",
        sqlite="",
    ),
    LiveIndex(
        "renter_phone_trigram",
        "renter",
        "USING gin ((CAST(phone AS VARCHAR)) gin_trgm_ops)",
        sqlite="",
    ),
    LiveIndex("audit_event_subject_at", "audit_event", "(subject, at)"),
    LiveIndex("message_conversation", "message", "(conversation_id, id)"),
    LiveIndex("message_provider", "message", "(provider_id)"),
    LiveIndex("payment_booking", "payment", "(booking_id)"),
    LiveIndex("extension_booking", "extension", "(booking_id)"),
    LiveIndex("identity_check_renter", "identity_check", "(renter_id)"),
    LiveIndex("identity_check_booking", "identity_check", "(booking_id)"),
    LiveIndex("identity_check_provider_ref", "identity_check", "(provider_ref)"),
    LiveIndex("conversation_renter", "conversation", "(renter_id)"),
    LiveIndex("conversation_thread", "conversation", "(agent_thread_id)"),
    LiveIndex("asset_lock_lock", "asset_lock", "(lock_id)"),
    LiveIndex("simulated_unlock_device_at", "simulated_unlock", "(device_id, at)"),
]


#: SQLite's overlap triggers (0009) compare instants with ``julianday``, which no index serves:
#: each insert read every booking the item ever had. They now also bound the other booking's
#: end by its stored text, a day before the new range starts — a day covers any offset a stored
#: time may carry — so the item's bookings are read by ``booking_asset_until`` from there on.
HOLDING = _RANGES.HOLDING
_SQLITE_CHECK = f"""
    SELECT RAISE(ABORT, 'booking_no_overlap')
    WHERE NEW.state IN {HOLDING} AND EXISTS (
        SELECT 1 FROM booking b
        WHERE b.asset_id = NEW.asset_id
          AND b.blocked_until > strftime('%Y-%m-%d %H:%M:%S', julianday(NEW.blocked_from) - 1)
          AND b.id <> NEW.id AND b.state IN {HOLDING}
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


async def _sqlite(schema_editor, statements):
    """On SQLite, the triggers are replaced in one transaction of their own: no write slips
    between dropping the old and creating the new."""
    if schema_editor.client.capabilities.dialect == "sqlite":
        script = ";\n".join(["BEGIN IMMEDIATE", *statements, "COMMIT"])
        await schema_editor.client.execute_script(script)


async def bounded_triggers(apps, schema_editor):
    await _sqlite(schema_editor, SQLITE_FORWARD)


async def unbounded_triggers(apps, schema_editor):
    await _sqlite(schema_editor, _RANGES.SQLITE_FORWARD)


class Migration(migrations.Migration):
    dependencies = [("models", "0012_location_lead_times")]

    initial = False
    #: CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    operations = [
        build_live(INDEXES, extensions=["pg_trgm"]),
        ops.RunPython(bounded_triggers, unbounded_triggers),
    ]
