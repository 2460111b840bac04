"""Retention with the injected clock: old audit records and message bodies go, recent ones stay."""

from __future__ import annotations

from datetime import timedelta

from flows.retention import RETENTION_KEY, Retention, RetentionPolicy
from flows.timers import TimerFired
from storage.models import AuditEvent, Conversation, Message, ProcessedWebhook
from tests.conftest import FakeClock


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
    outcome = await retention.on_due(event)
    assert [a.action for a in await AuditEvent.all()] == ["booking.paid"]
    bodies = await Message.all().order_by("id").values_list("body", flat=True)
    assert bodies == ["", "hi"]
    assert not await ProcessedWebhook.exists()
    [next_run] = outcome.timers
    assert next_run.due_at == now + timedelta(days=1)  # type: ignore[union-attr]
    assert outcome.audits[0].details["audit_events"] == 1


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
    outcome = await retention.on_due(event)
    media = await Message.filter(direction="in").order_by("id").values_list("media", flat=True)
    assert media == [[], [], telegram], "only the recent photo keeps its reference"
    await pin.refresh_from_db()
    assert (pin.body, pin.sealed) == ("", False), "a blanked body is no longer a sealed one"
    assert outcome.audits[0].details["message_media"] == 2
    again = await retention.on_due(event)
    assert again.audits[0].details["message_media"] == 0
