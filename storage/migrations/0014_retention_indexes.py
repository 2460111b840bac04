"""Retention purges its expired rows a batch at a time, the oldest first: each batch is chosen
through an index on the row's age, so it reads only the rows it purges.

- audit events and simulated locks' keypad logs by time (0013's indexes lead with the subject
  and the device, which a purge by age cannot use);
- messages by time, among those that still hold a body, and among those that hold only a
  photo reference: a blanked message leaves both, so no batch reads it again, and a batch of
  photo-only messages does not wade through the messages with text;
- provider event ids by when they were received;
- outbox effects by state and when they were done (finished ones, oldest first);
- finished timers (done or cancelled) by their age, the pending ones left out.

Built without locking the tables (``CREATE INDEX CONCURRENTLY`` on PostgreSQL, outside a
transaction). The names and predicates are those storage/retention.py's statements use.
"""

from tortoise import migrations

from storage.migrations._indexes import LiveIndex, build_live

INDEXES = [
    LiveIndex("audit_event_at", "audit_event", "(at)"),
    LiveIndex("simulated_unlock_at", "simulated_unlock", "(at)"),
    LiveIndex("message_with_body", "message", "(created_at) WHERE body <> ''"),
    LiveIndex(
        "message_media_only", "message", "(created_at) WHERE body = '' AND media <> '[]'"
    ),
    LiveIndex("processed_webhook_received", "processed_webhook", "(received_at)"),
    LiveIndex("outbox_effect_state_done", "outbox_effect", "(state, done_at)"),
    LiveIndex("timer_finished", "timer", "(created_at) WHERE state <> 'pending'"),
]


class Migration(migrations.Migration):
    dependencies = [("models", "0013_lookup_indexes")]

    initial = False
    #: CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    operations = [build_live(INDEXES)]
