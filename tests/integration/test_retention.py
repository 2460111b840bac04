"""Retention with the injected clock: old audit records and message bodies go, recent ones stay,
a batch at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

import flows.timers
from bot.timers import TimerRunner
from flows.effects import Outcome
from flows.retention import RETENTION_KEY, RETENTION_TIMER, Retention, RetentionPolicy
from flows.staging import stage_outcome
from flows.timers import TimerFired
from storage.db import sql
from storage.models import (
    AuditEvent,
    Conversation,
    EffectState,
    GpsPosition,
    Message,
    OutboxEffect,
    ProcessedWebhook,
    SimulatedUnlock,
    Timer,
    TimerState,
)
from storage.retention import EXPIRED_ROWS, ExpiredRows
from storage.timers import ensure_timer
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


#: Each kind of expired row, as many as the backlog test seeds: more than a batch of some.
BACKLOG = {
    "audit_events": 7,
    "access_records": 4,
    "message_bodies": 5,
    "message_media": 4,
    "webhook_ids": 4,
    "finished_work": 6,
    "gps_positions": 4,
}
SMALL = RetentionPolicy(audit_days=90, message_days=30, batch=3)


async def _seed_backlog(now: datetime) -> Conversation:
    """Rows past their period (``BACKLOG``) beside rows still within it."""
    old, recent = now - timedelta(days=91), now - timedelta(days=3)
    for n in range(BACKLOG["audit_events"]):
        at = old + timedelta(minutes=n)
        await AuditEvent.create(at=at, actor="renter:1", action="booking.held")
    await AuditEvent.create(at=recent, actor="renter:1", action="booking.paid")
    for _ in range(BACKLOG["access_records"]):
        await SimulatedUnlock.create(device_id="sim-1", source="keypad", accepted=True, at=old)
    await SimulatedUnlock.create(device_id="sim-1", source="keypad", accepted=True, at=recent)
    conversation = await Conversation.create(channel="sms", address="+15550100001")
    photo = [{"url": "telegram-file:AgACAgQAAxkBAAIB", "content_type": "image/jpeg"}]
    for n in range(BACKLOG["message_bodies"]):
        await Message.create(
            conversation=conversation, direction="in", body=f"old {n}", created_at=old
        )
    for _ in range(BACKLOG["message_media"]):
        await Message.create(
            conversation=conversation, direction="in", body="", media=photo, created_at=old
        )
    await Message.create(conversation=conversation, direction="in", body="hi", created_at=recent)
    await Message.create(
        conversation=conversation, direction="in", body="", media=photo, created_at=recent
    )
    for n in range(BACKLOG["webhook_ids"]):
        await ProcessedWebhook.create(provider="stripe", event_id=f"evt_{n}", received_at=old)
    await ProcessedWebhook.create(provider="stripe", event_id="evt_new", received_at=recent)
    for n, state in enumerate((EffectState.DONE,) * 3 + (EffectState.PENDING,)):
        await OutboxEffect.create(
            kind="send_message",
            idempotency_key=f"old:{n}",
            state=state,
            next_attempt_at=old,
            created_at=old,
            done_at=old if state == EffectState.DONE else None,
        )
    for state in (TimerState.DONE, TimerState.CANCELLED, TimerState.DONE, TimerState.PENDING):
        await Timer.create(kind="booking.hold_expiry", due_at=old, state=state, created_at=old)
    for n, fixed in enumerate([old] * BACKLOG["gps_positions"] + [recent]):
        await GpsPosition.create(
            device_id=101, position_id=n + 1, latitude=1.0, longitude=2.0, fixed_at=fixed,
            received_at=fixed,
        )  # fmt: skip
    return conversation


async def _expired_left(now: datetime) -> dict[str, int]:
    """How many rows of each kind the purge has still to take."""
    old = now - timedelta(days=30)
    messages = Message.filter(created_at__lt=old)
    return {
        "audit_events": await AuditEvent.filter(at__lt=old).count(),
        "access_records": await SimulatedUnlock.filter(at__lt=old).count(),
        "message_bodies": await messages.exclude(body="").count(),
        "message_media": await messages.filter(body="").exclude(media=[]).count(),
        "webhook_ids": await ProcessedWebhook.filter(received_at__lt=old).count(),
        "finished_work": await OutboxEffect.filter(state=EffectState.DONE).count()
        + await Timer.filter(created_at__lt=old).exclude(state=TimerState.PENDING).count(),
        "gps_positions": await GpsPosition.filter(fixed_at__lt=old).count(),
    }


async def _start_pass(clock: FakeClock, policy: RetentionPolicy) -> TimerRunner:
    """The timer runner with retention's handler, and retention's timer due now, as the service
    sets it at start-up."""
    now = clock.now()
    await ensure_timer(kind=RETENTION_TIMER, key=RETENTION_KEY, due_at=now, now=now)
    return TimerRunner(clock, Retention(clock, policy).timer_handlers())


async def _pending_retention() -> Timer:
    [timer] = await Timer.filter(kind=RETENTION_TIMER, state=TimerState.PENDING)
    return timer


async def test_a_backlog_is_purged_a_batch_per_firing_until_none_is_left(
    database: str, clock: FakeClock
) -> None:
    started = clock.now()
    await _seed_backlog(started)
    runner = await _start_pass(clock, SMALL)
    left = await _expired_left(started)
    assert left == BACKLOG
    firings = 0
    while not await AuditEvent.filter(action="retention.purged").exists():
        assert await runner.run_due() == 1
        firings += 1
        now_left = await _expired_left(started)
        for kind, n in now_left.items():
            # effects and timers are two kinds of row, a batch each
            most = 2 * SMALL.batch if kind == "finished_work" else SMALL.batch
            assert left[kind] - most <= n <= left[kind], (firings, kind, left, now_left)
        assert now_left != left, "every firing purges something"
        left = now_left
        timer = await _pending_retention()
        if any(left.values()):
            assert timer.due_at == clock.now() + SMALL.pause, "the next batch runs soon"
            clock.advance(SMALL.pause)
        assert firings < 10
    assert firings == 3, "7 audit events take three batches of 3"
    assert not any(left.values())
    timer = await _pending_retention()
    assert timer.due_at == started + timedelta(days=1), "the next pass a day after this one"
    assert timer.payload == {}
    [audit] = await AuditEvent.filter(action="retention.purged")
    assert audit.details == {
        **BACKLOG,
        "condition_photos": 0,
        "batches": 3,
        "started_at": started.isoformat(),
    }
    # What was within its period is untouched.
    assert await AuditEvent.filter(action="booking.paid").count() == 1
    assert await SimulatedUnlock.all().count() == 1
    recent = await Message.filter(created_at__gt=started - timedelta(days=30)).order_by("id")
    assert [(m.body, m.media != []) for m in recent] == [("hi", False), ("", True)]
    assert await ProcessedWebhook.all().values_list("event_id", flat=True) == ["evt_new"]
    assert await OutboxEffect.filter(state=EffectState.PENDING).count() == 1
    assert await Timer.filter(kind="booking.hold_expiry").count() == 1  # the pending one


async def test_a_batch_whose_commit_is_lost_is_purged_by_the_next_firing(
    database: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = clock.now()
    await _seed_backlog(started)
    runner = await _start_pass(clock, SMALL)
    assert await runner.run_due() == 1
    after_first = await _expired_left(started)
    real = flows.timers.unit_of_work
    lost = 0

    @asynccontextmanager
    async def losing_once() -> AsyncIterator[BaseDBAsyncClient]:
        nonlocal lost
        async with real() as conn:
            yield conn
            if not lost:
                lost += 1
                raise ConnectionResetError("the database went away before the commit")

    monkeypatch.setattr(flows.timers, "unit_of_work", losing_once)
    clock.advance(SMALL.pause)
    assert await runner.run_due() == 0, "the second batch's commit is lost"
    assert lost == 1
    assert await _expired_left(started) == after_first, "nothing of the lost batch stays done"
    firings = 0
    while not await AuditEvent.filter(action="retention.purged").exists():
        clock.advance(timedelta(minutes=1))  # past the runner's backoff
        firings += await runner.run_due()
        assert firings < 10
    assert not any((await _expired_left(started)).values())
    [audit] = await AuditEvent.filter(action="retention.purged")
    assert {kind: audit.details[kind] for kind in BACKLOG} == BACKLOG, "counted once each"
    assert audit.details["batches"] == 3


async def _plan(conn: BaseDBAsyncClient, rows: ExpiredRows, cutoff: datetime) -> str:
    """The plan the database makes for one batch of ``rows``, with sequential scans priced out
    so the plan names the index the statement can use, whatever the size of the table."""
    if conn.capabilities.dialect == "postgres":
        # A plan prepared for any parameters: the index must serve every cutoff and batch.
        await conn.execute_script(
            "SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan;"
            f" PREPARE purge_batch AS {rows.statement()}"
        )
        lines = await conn.execute_query_dict(
            f"EXPLAIN EXECUTE purge_batch('{cutoff.isoformat()}', 2000)"
        )
        await conn.execute_script("DEALLOCATE purge_batch")
        return "\n".join(line["QUERY PLAN"] for line in lines)
    lines = await conn.execute_query_dict(
        "EXPLAIN QUERY PLAN " + sql(rows.statement()), [cutoff, 2000]
    )
    return "\n".join(line["detail"] for line in lines)


async def test_each_batch_is_chosen_through_its_index(database: str, clock: FakeClock) -> None:
    cutoff = clock.now() - timedelta(days=30)
    async with in_transaction() as conn:
        plans = {rows: await _plan(conn, rows, cutoff) for rows in EXPIRED_ROWS}
    for rows, plan in plans.items():
        assert rows.index in plan, (rows.table, rows.where, plan)
