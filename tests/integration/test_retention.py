"""Retention with the injected clock: old audit records and message bodies go, recent ones stay."""

from __future__ import annotations

from datetime import timedelta

from flows.effects import Outcome
from flows.retention import RETENTION_KEY, RETENTION_TIMER, Retention, RetentionPolicy
from flows.staging import stage_outcome
from flows.timers import TimerFired
from storage.models import AuditEvent, Conversation, Message, ProcessedWebhook, Timer
from storage.uow import unit_of_work
from tests.conftest import FakeClock


async def _run(retention: Retention, event: TimerFired) -> dict[str, object]:
    """Fire the retention timer as the timer runner does: its outcome committed in one unit of
    work. Returns the details of the audit it recorded."""
    outcome: Outcome = await retention.on_due(event)
    assert not outcome.audits and not outcome.timers, "nothing changes before the runner commits"
    async with unit_of_work() as conn:
        await stage_outcome(conn, outcome, event.fired_at)
    audit = await AuditEvent.filter(action="retention.purged").order_by("-id").first()
    assert audit is not None
    return dict(audit.details)


async def test_old_records_are_purged_and_the_next_run_set(database: str, clock: FakeClock) -> None:
    now = clock.now()
    old, recent = now - timedelta(days=91), now - timedelta(days=3)
    await AuditEvent.create(at=old, actor="renter:1", action="booking.held")
    await AuditEvent.create(at=recent, actor="renter:1", action="booking.paid")
    conversation = await Conversation.create(channel="sms", address="+15550100001")
    await Message.create(
        conversation=conversation, direction="in", body="my name is Ana", created_at=old
    )
    await Message.create(conversation=conversation, direction="in", body="hi", created_at=recent)
    await ProcessedWebhook.create(provider="stripe", event_id="evt_old", received_at=old)
    retention = Retention(clock, RetentionPolicy(audit_days=90, message_days=30))
    event = TimerFired(1, "retention.purge", RETENTION_KEY, {}, now, now)
    purged = await _run(retention, event)
    actions = [a.action for a in await AuditEvent.all().order_by("id")]
    assert actions == ["booking.paid", "retention.purged"]
    bodies = await Message.all().order_by("id").values_list("body", flat=True)
    assert bodies == ["", "hi"]
    assert not await ProcessedWebhook.exists()
    [next_run] = await Timer.filter(kind=RETENTION_TIMER)
    assert next_run.due_at == now + timedelta(days=1)
    assert next_run.key == RETENTION_KEY
    assert purged["audit_events"] == 1


async def test_a_photo_only_message_loses_its_media_reference(
    database: str, clock: FakeClock
) -> None:
    now = clock.now()
    old, recent = now - timedelta(days=31), now - timedelta(days=3)
    conversation = await Conversation.create(channel="sms", address="+15550100001")
    photo = [{"url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"}]
    telegram = [{"url": "telegram-file:AgACAgQAAxkBAAIB", "content_type": "image/jpeg"}]
    for media, at in ((photo, old), (telegram, old), (telegram, recent)):
        await Message.create(
            conversation=conversation, direction="in", body="", media=media, created_at=at
        )
    pin = await Message.create(
        conversation=conversation, direction="out", body="gAAAA-sealed", sealed=True, created_at=old
    )
    retention = Retention(clock, RetentionPolicy(message_days=30))
    event = TimerFired(1, "retention.purge", RETENTION_KEY, {}, now, now)
    purged = await _run(retention, event)
    media = await Message.filter(direction="in").order_by("id").values_list("media", flat=True)
    assert media == [[], [], telegram], "only the recent photo keeps its reference"
    await pin.refresh_from_db()
    assert (pin.body, pin.sealed) == ("", False), "a blanked body is no longer a sealed one"
    assert purged["message_media"] == 2
    again = await _run(retention, event)
    assert again["message_media"] == 0
