"""Writes an Outcome's state changes, effects, timers, alerts and audit events inside the caller's
transaction, and ``run_unit``: how a runner commits one handler's outcome."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.effects import CancelTimer, Handler, Outcome, SetTimer
from storage.journal import raise_alert, record_audit
from storage.outbox import StagedEffect, enqueue_effects
from storage.timers import cancel_timer, set_timer
from storage.uow import unit_of_work


async def stage_outcome(conn: BaseDBAsyncClient, outcome: Outcome, now: datetime) -> None:
    for write in outcome.writes:
        await stage_outcome(conn, await write(conn), now)
    await enqueue_effects(
        conn,
        [
            StagedEffect(effect.kind, dict(effect.payload), effect.key, effect.critical)
            for effect in outcome.effects
        ],
        now=now,
    )
    for timer in outcome.timers:
        if isinstance(timer, SetTimer):
            await set_timer(
                conn,
                kind=timer.kind,
                due_at=timer.due_at,
                key=timer.key,
                payload=dict(timer.payload),
                now=now,
            )
        elif isinstance(timer, CancelTimer):
            await cancel_timer(conn, timer.key)
    for alert in outcome.alerts:
        await raise_alert(
            conn,
            now=now,
            kind=alert.kind,
            group_key=alert.group_key,
            message_key=alert.message_key,
            params=dict(alert.params),
        )
    for audit in outcome.audits:
        await record_audit(
            conn,
            at=now,
            actor=audit.actor,
            action=audit.action,
            subject=audit.subject,
            details=dict(audit.details),
        )


async def run_unit(handler: Handler, now: datetime) -> Outcome:
    """For runners only: run ``handler`` in a new unit of work and commit its outcome with it."""
    async with unit_of_work() as conn:
        outcome = await handler(conn)
        await stage_outcome(conn, outcome, now)
    return outcome
