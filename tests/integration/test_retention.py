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
