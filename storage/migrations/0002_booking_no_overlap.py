"""The database itself refuses two slot-holding bookings of one asset that overlap.

PostgreSQL: an exclusion constraint over (asset, time range) with btree_gist.
SQLite: triggers that abort the insert or update, with the same message.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

HOLDING = "('awaiting_payment','awaiting_id','confirmed','active')"

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS btree_gist",
    "ALTER TABLE booking ADD CONSTRAINT booking_end_after_start CHECK (end_at > start_at)",
    "ALTER TABLE booking ADD CONSTRAINT booking_no_overlap EXCLUDE USING gist "
    "(asset_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&) "
    f"WHERE (state IN {HOLDING})",
]
POSTGRES_BACKWARD = [
    "ALTER TABLE booking DROP CONSTRAINT booking_no_overlap",
    "ALTER TABLE booking DROP CONSTRAINT booking_end_after_start",
]

_SQLITE_CHECK = f"""
    SELECT RAISE(ABORT, 'booking_no_overlap')
    WHERE NEW.state IN {HOLDING} AND EXISTS (
        SELECT 1 FROM booking b
        WHERE b.asset_id = NEW.asset_id AND b.id <> NEW.id AND b.state IN {HOLDING}
          AND julianday(b.start_at) < julianday(NEW.end_at)
          AND julianday(NEW.start_at) < julianday(b.end_at));
    SELECT RAISE(ABORT, 'booking_end_after_start')
    WHERE julianday(NEW.end_at) <= julianday(NEW.start_at);
"""
SQLITE_FORWARD = [
    f"CREATE TRIGGER booking_no_overlap_insert BEFORE INSERT ON booking BEGIN {_SQLITE_CHECK} END",
    "CREATE TRIGGER booking_no_overlap_update BEFORE UPDATE OF asset_id, start_at, end_at, state "
    f"ON booking BEGIN {_SQLITE_CHECK} END",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER booking_no_overlap_insert",
    "DROP TRIGGER booking_no_overlap_update",
]


async def _run(schema_editor, postgres, sqlite):
    dialect = schema_editor.client.capabilities.dialect
    statements = postgres if dialect == "postgres" else sqlite
    for statement in statements:
        await schema_editor.client.execute_query(statement)


async def forward(apps, schema_editor):
    await _run(schema_editor, POSTGRES_FORWARD, SQLITE_FORWARD)


async def backward(apps, schema_editor):
    await _run(schema_editor, POSTGRES_BACKWARD, SQLITE_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [ops.RunPython(forward, backward)]
