"""Events lock providers push (Seam webhooks): codes confirmed or refused, devices going away.

Each event id is handled once. A device outage is ONE alert per lock that grows while it lasts
and is resolved when the device is back, naming the bookings it puts at risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from flows.access import became_set, rejected_alert, removal_confirmed
from flows.effects import Alert, Audit, Effect, Outcome
from flows.staging import stage_outcome
from storage.journal import resolve_alert
from storage.models import AccessCode, AccessCodeState, Lock, ProcessedWebhook

LOW_BATTERY = 0.2


class LockEventKind(StrEnum):
    CODE_SET = "code_set"
    CODE_FAILED = "code_failed"
    CODE_REMOVED = "code_removed"
    DEVICE_OFFLINE = "device_offline"
    DEVICE_ONLINE = "device_online"
    LOW_BATTERY = "low_battery"
    UNLOCKED = "unlocked"
    OTHER = "other"


@dataclass(frozen=True)
class LockEvent:
    provider: str
    event_id: str
    kind: LockEventKind
    device_id: str | None
    occurred_at: datetime
    code_ref: str | None = None
    battery_level: float | None = None
    detail: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


async def handle_lock_event(event: LockEvent, now: datetime) -> bool:
    """Apply a pushed event once; False when this event id was seen before."""
    lock = None
    if event.device_id is not None:
        lock = await Lock.get_or_none(provider=event.provider, device_id=event.device_id)
    try:
        async with in_transaction() as conn:
            await ProcessedWebhook.create(
                provider=event.provider, event_id=event.event_id, received_at=now, using_db=conn
            )
            outcome = Outcome()
            if lock is not None:
                await Lock.filter(id=lock.id).using_db(conn).update(last_event_at=event.occurred_at)
                outcome = await _apply(conn, lock, event, now)
            await stage_outcome(conn, outcome, now)
    except IntegrityError:
        return False
    if lock is not None and event.kind == LockEventKind.DEVICE_ONLINE:
        await resolve_alert(None, group_key=f"lock-offline:{lock.key}", now=now, by="the lock")
    return True


async def _apply(conn: Any, lock: Lock, event: LockEvent, now: datetime) -> Outcome:
    outcome = Outcome(audits=[Audit(f"lock:{lock.key}", f"lock.{event.kind}", f"lock:{lock.key}")])
    code = None
    if event.code_ref is not None:
        code = (
            await AccessCode.filter(lock_id=lock.id, provider_ref=event.code_ref)
            .using_db(conn)
            .first()
        )
    if event.kind == LockEventKind.CODE_SET and code is not None:
        confirmed = await (
            AccessCode.filter(id=code.id, state=AccessCodeState.PROGRAMMING)
            .using_db(conn)
            .update(state=AccessCodeState.SET)
        )
        if confirmed:
            outcome = outcome + became_set(code, now)
    elif event.kind == LockEventKind.CODE_FAILED and code is not None:
        await (
            AccessCode.filter(id=code.id)
            .using_db(conn)
            .update(state=AccessCodeState.FAILED, last_error=event.detail[:500])
        )
        outcome.alerts.append(rejected_alert(lock, event.detail or "failed to set on device"))
        outcome.effects.append(
            Effect(
                "access.set",
                f"access:set:{code.id}:after:{event.event_id}",
                {"code": code.id, "fresh": True},
            )
        )
    elif event.kind == LockEventKind.CODE_REMOVED and code is not None:
        if code.state in (AccessCodeState.SET, AccessCodeState.PROGRAMMING) and code.ends_at > now:
            # Taken off the lock by someone else while it should work: put it back.
            await (
                AccessCode.filter(id=code.id)
                .using_db(conn)
                .update(state=AccessCodeState.PENDING, provider_ref=None)
            )
            outcome.effects.append(
                Effect(
                    "access.set",
                    f"access:set:{code.id}:restore:{event.event_id}",
                    {"code": code.id},
                )
            )
        else:
            await AccessCode.filter(id=code.id).using_db(conn).update(state=AccessCodeState.REMOVED)
            if code.state == AccessCodeState.REMOVING:
                outcome = outcome + removal_confirmed(code, lock, now)
    elif event.kind == LockEventKind.DEVICE_OFFLINE:
        await Lock.filter(id=lock.id).using_db(conn).update(online=False)
        outcome.alerts.append(
            Alert(
                "lock_offline",
                f"lock-offline:{lock.key}",
                "ops.lock_offline",
                {"lock": lock.label, "at_risk": await _at_risk(conn, lock, now)},
            )
        )
    elif event.kind == LockEventKind.DEVICE_ONLINE:
        await Lock.filter(id=lock.id).using_db(conn).update(online=True)
    elif event.kind == LockEventKind.LOW_BATTERY:
        await Lock.filter(id=lock.id).using_db(conn).update(battery_level=event.battery_level)
        outcome.alerts.append(
            Alert(
                "lock_battery",
                f"lock-battery:{lock.key}",
                "ops.lock_battery",
                {"lock": lock.label, "at_risk": await _at_risk(conn, lock, now)},
            )
        )
    return outcome


async def _at_risk(conn: Any, lock: Lock, now: datetime) -> int:
    """Codes on this lock whose window is open now or opens within a day."""
    return (
        await AccessCode.filter(
            lock_id=lock.id,
            state__in=(AccessCodeState.PENDING, AccessCodeState.PROGRAMMING, AccessCodeState.SET),
            starts_at__lt=now + timedelta(days=1),
            ends_at__gt=now,
        )
        .using_db(conn)
        .count()
    )
