"""Retention: what Keyturn keeps about people, and for how long.

ID images are deleted the moment a decision is made (flows.journey); this purge removes audit and
lock-access records after their period, blanks message bodies and media references (a photo's
Twilio URL or Telegram file id, whether or not the message had text) after theirs, and forgets
provider event ids once no provider would retry them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.transactions import in_transaction

from storage.models import (
    AuditEvent,
    EffectState,
    Message,
    OutboxEffect,
    ProcessedWebhook,
    SimulatedUnlock,
    Timer,
    TimerState,
)

#: Providers retry deliveries for days (Stripe: up to three); ids are kept well past that.
WEBHOOK_IDS_KEPT = timedelta(days=30)
#: Finished outbox effects and timers are kept a week for investigation.
FINISHED_WORK_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class Purged:
    audit_events: int
    message_bodies: int
    #: Messages with no text whose photo references were forgotten.
    message_media: int
    access_records: int
    webhook_ids: int
    finished_work: int


async def purge(now: datetime, *, audit_days: int, message_days: int) -> Purged:
    audit_before = now - timedelta(days=audit_days)
    messages_before = now - timedelta(days=message_days)
    audit = await AuditEvent.filter(at__lt=audit_before).delete()
    access = await SimulatedUnlock.filter(at__lt=audit_before).delete()
    blank = {"body": "", "media": [], "choices": [], "sealed": False}
    bodies = await Message.filter(created_at__lt=messages_before).exclude(body="").update(**blank)
    media = (
        await Message.filter(created_at__lt=messages_before, body="")
        .exclude(media=[])
        .update(**blank)
    )
    webhooks = await ProcessedWebhook.filter(received_at__lt=now - WEBHOOK_IDS_KEPT).delete()
    effects = await OutboxEffect.filter(
        state=EffectState.DONE, done_at__lt=now - FINISHED_WORK_KEPT
    ).delete()
    timers = await Timer.filter(
        state__in=(TimerState.DONE, TimerState.CANCELLED),
        created_at__lt=now - FINISHED_WORK_KEPT,
    ).delete()
    return Purged(audit, bodies, media, access, webhooks, effects + timers)


async def forget_media(effect_id: int, message_ids: Sequence[int]) -> None:
    """Blank the references to a photo once it is deleted where the channel kept it: the
    media of the messages that carried it, and the URL in the effect that collected it."""
    async with in_transaction() as conn:
        effect = await OutboxEffect.filter(id=effect_id).using_db(conn).first()
        if effect is not None:
            payload = {**effect.payload, "url": "", "content_type": ""}
            await OutboxEffect.filter(id=effect_id).using_db(conn).update(payload=payload)
        await Message.filter(id__in=list(message_ids)).using_db(conn).update(media=[])
