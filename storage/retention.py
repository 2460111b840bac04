"""Retention: what Keyturn keeps about people, and for how long.

ID images are deleted the moment a decision is made (flows.journey); this purge removes audit and
lock-access records after their period, blanks message bodies and media references (a photo's
Twilio URL or Telegram file id, whether or not the message had text) after theirs, deletes the
images of condition photos a set time after their rental ended, and forgets provider event ids
once no provider would retry them.

A business with years of data has millions of expired rows: a purge of all of them in one
transaction would hold the database for minutes while renters chat. ``purge`` takes at most one
batch of each kind of row, the oldest first, each batch chosen through an index (migration
0014) that only holds rows still to purge, so a batch reads what it purges and nothing it purged
before; the caller runs batches until one comes back short.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from storage.db import sql
from storage.models import EffectState, Message, OutboxEffect, TimerState

#: Providers retry deliveries for days (Stripe: up to three); ids are kept well past that.
WEBHOOK_IDS_KEPT = timedelta(days=30)
#: Finished outbox effects and timers are kept a week for investigation.
FINISHED_WORK_KEPT = timedelta(days=7)

#: A message still holding text, and one holding only a photo reference. The same texts are the
#: predicates of the partial indexes each batch is chosen by (a blanked message leaves both), and
#: read the same on both databases: on PostgreSQL the literal is taken as jsonb, on SQLite media
#: is JSON text.
WITH_BODY = "body <> ''"
MEDIA_ONLY = "body = '' AND media <> '[]'"
#: What a message is left with once purged: no text, no photo, no choices; a blank body is not
#: a sealed one.
BLANK_MESSAGE = "body = '', media = '[]', choices = '[]', sealed = FALSE"
#: A timer is finished once it is no longer pending (done or cancelled). Written as "not
#: pending", which no index on the state serves, so SQLite's planner takes the partial index.
FINISHED_TIMER = f"state <> '{TimerState.PENDING.value}'"
FINISHED_EFFECT = f"state = '{EffectState.DONE.value}'"
#: The name migration 0016 gave the index on ``gps_position (fixed_at)``.
GPS_FIXED_AT_INDEX = "idx_gps_positio_fixed_a_0aeb9a"


@dataclass(frozen=True)
class ExpiredRows:
    """One kind of row purged a batch at a time: those older than a cutoff (in ``at``) that
    match ``where``, the oldest first, deleted or, with ``blank``, blanked.

    ``where`` is literal SQL, never a parameter: a PostgreSQL plan prepared once for any
    parameters can use a partial index only when the query states the index's predicate itself.
    """

    table: str
    at: str
    #: The index that serves the batch's choice (built by migration 0014).
    index: str
    where: str = ""
    #: The SET clause that blanks a row; empty: the row is deleted.
    blank: str = ""

    def statement(self) -> str:
        """The statement purging one batch, with the cutoff and the batch size as parameters
        (PostgreSQL's placeholders: ``storage.db.sql`` turns them into SQLite's). Only this
        module's constants are joined in."""
        where = f"{self.at} < $1" + (f" AND {self.where}" if self.where else "")
        chosen = f"SELECT id FROM {self.table} WHERE {where} ORDER BY {self.at} LIMIT $2"  # noqa: S608
        if self.blank:
            return f"UPDATE {self.table} SET {self.blank} WHERE id IN ({chosen})"  # noqa: S608
        return f"DELETE FROM {self.table} WHERE id IN ({chosen})"  # noqa: S608


AUDIT_EVENTS = ExpiredRows("audit_event", "at", "audit_event_at")
ACCESS_RECORDS = ExpiredRows("simulated_unlock", "at", "simulated_unlock_at")
MESSAGE_BODIES = ExpiredRows(
    "message", "created_at", "message_with_body", where=WITH_BODY, blank=BLANK_MESSAGE
)
#: Messages with no text whose photo references are still kept.
MESSAGE_MEDIA = ExpiredRows(
    "message", "created_at", "message_media_only", where=MEDIA_ONLY, blank=BLANK_MESSAGE
)
WEBHOOK_IDS = ExpiredRows("processed_webhook", "received_at", "processed_webhook_received")
FINISHED_EFFECTS = ExpiredRows(
    "outbox_effect", "done_at", "outbox_effect_state_done", where=FINISHED_EFFECT
)
FINISHED_TIMERS = ExpiredRows("timer", "created_at", "timer_finished", where=FINISHED_TIMER)
#: Items' GPS positions, by the tracker's fix time (the index migration 0016 made).
GPS_POSITIONS = ExpiredRows("gps_position", "fixed_at", GPS_FIXED_AT_INDEX)

#: A condition photo still holding its image: the predicate of the partial index its batch is
#: chosen by (migration 0017).
WITH_IMAGE = "image_encrypted IS NOT NULL"
#: The images of condition photos whose rental ended before the cutoff, a batch at a time, the
#: oldest rental first: the photos still holding one are read through their partial index, each
#: joined to its booking by key. The row stays (which prompt was answered, when); its image goes.
CONDITION_PHOTOS = (
    "UPDATE condition_photo SET image_encrypted = NULL WHERE id IN ("  # noqa: S608
    "SELECT condition_photo.id FROM condition_photo"
    " JOIN booking ON booking.id = condition_photo.booking_id"
    f" WHERE booking.end_at < $1 AND condition_photo.{WITH_IMAGE}"
    " ORDER BY booking.end_at LIMIT $2)"
)
CONDITION_PHOTOS_INDEX = "condition_photo_with_image"

#: Every kind of row the purge takes, in the order it takes them.
EXPIRED_ROWS = (
    AUDIT_EVENTS,
    ACCESS_RECORDS,
    MESSAGE_BODIES,
    MESSAGE_MEDIA,
    WEBHOOK_IDS,
    FINISHED_EFFECTS,
    FINISHED_TIMERS,
    GPS_POSITIONS,
)


@dataclass(frozen=True)
class Purged:
    audit_events: int = 0
    message_bodies: int = 0
    #: Messages with no text whose photo references were forgotten.
    message_media: int = 0
    access_records: int = 0
    webhook_ids: int = 0
    finished_work: int = 0
    #: Condition photos whose image was deleted (``KEYTURN_PHOTO_RETENTION_DAYS`` after the
    #: rental's end).
    condition_photos: int = 0
    gps_positions: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_counts(cls, counts: object) -> Purged:
        """Counts carried as JSON (a timer's payload); anything else counts as nothing."""
        if not isinstance(counts, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{name: int(n) for name, n in counts.items() if name in known and _count(n)})


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class PurgeBatch:
    purged: Purged
    #: A batch came back full: more of that kind may have expired, another batch is due.
    more_left: bool


async def purge(
    conn: BaseDBAsyncClient,
    now: datetime,
    *,
    audit_days: int,
    message_days: int,
    batch: int,
    photo_days: int = 30,
    gps_days: int = 30,
) -> PurgeBatch:
    """Purge at most ``batch`` rows of each kind that expired by ``now``, in ``conn``'s
    transaction; condition photos ``photo_days`` after their rental's end."""
    audit_before = now - timedelta(days=audit_days)
    messages_before = now - timedelta(days=message_days)
    cutoffs = {
        AUDIT_EVENTS: audit_before,
        ACCESS_RECORDS: audit_before,
        MESSAGE_BODIES: messages_before,
        MESSAGE_MEDIA: messages_before,
        WEBHOOK_IDS: now - WEBHOOK_IDS_KEPT,
        FINISHED_EFFECTS: now - FINISHED_WORK_KEPT,
        FINISHED_TIMERS: now - FINISHED_WORK_KEPT,
        GPS_POSITIONS: now - timedelta(days=gps_days),
    }
    done: dict[ExpiredRows, int] = {}
    for rows in EXPIRED_ROWS:
        done[rows], _ = await conn.execute_query(sql(rows.statement()), [cutoffs[rows], batch])
    photos, _ = await conn.execute_query(
        sql(CONDITION_PHOTOS), [now - timedelta(days=photo_days), batch]
    )
    purged = Purged(
        audit_events=done[AUDIT_EVENTS],
        message_bodies=done[MESSAGE_BODIES],
        message_media=done[MESSAGE_MEDIA],
        access_records=done[ACCESS_RECORDS],
        webhook_ids=done[WEBHOOK_IDS],
        finished_work=done[FINISHED_EFFECTS] + done[FINISHED_TIMERS],
        condition_photos=photos,
        gps_positions=done[GPS_POSITIONS],
    )
    more_left = photos >= batch or any(n >= batch for n in done.values())
    return PurgeBatch(purged, more_left=more_left)


async def forget_media(effect_id: int, message_ids: Sequence[int]) -> None:
    """Blank the references to a photo once it is deleted where the channel kept it: the
    media of the messages that carried it, and the URL in the effect that collected it."""
    async with in_transaction() as conn:
        effect = await OutboxEffect.filter(id=effect_id).using_db(conn).first()
        if effect is not None:
            payload = {**effect.payload, "url": "", "content_type": ""}
            await OutboxEffect.filter(id=effect_id).using_db(conn).update(payload=payload)
        await Message.filter(id__in=list(message_ids)).using_db(conn).update(media=[])
