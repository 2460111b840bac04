"""Events lock providers push (Seam webhooks): codes confirmed or refused, devices going away.

Each event id is handled once: the runner (the webhook route) commits ``lock_event_handler``
in one unit of work, and a delivery seen before changes nothing. A device outage is ONE alert
per lock that grows while it lasts and is resolved when the device is back, naming the bookings
it puts at risk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access import SET_EFFECT, became_set, rejected_alert, removal_confirmed
from flows.effects import Alert, Audit, Effect, Handler, Outcome
from storage.codes import move_code
from storage.journal import resolve_alert
from storage.kinds import AlertKind
from storage.models import AccessCode, AccessCodeState, Lock
from storage.webhooks import claim_event

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


class EventSeen(Exception):
    """This provider event was handled before: a redelivery, to be answered 200 and dropped."""


def lock_event_handler(event: LockEvent, now: datetime) -> Handler:
    """The handler a runner commits to apply a pushed event once: it records the event id
    first, so a delivery seen before raises ``EventSeen`` and changes nothing. Any other
    constraint the event's changes break raises too, and the delivery is retried."""

    async def apply(conn: BaseDBAsyncClient) -> Outcome:
        if not await claim_event(conn, event.provider, event.event_id, at=now):
            raise EventSeen(event.event_id)
        if event.device_id is None:
            return Outcome()
        lock = await (
            Lock.filter(provider=event.provider, device_id=event.device_id).using_db(conn).first()
        )
        if lock is None:
            return Outcome()
        await Lock.filter(id=lock.id).using_db(conn).update(last_event_at=event.occurred_at)
        outcome = await _apply(conn, lock, event, now)
        if event.kind == LockEventKind.DEVICE_ONLINE:
            await resolve_alert(conn, group_key=f"lock-offline:{lock.key}", now=now, by="the lock")
        return outcome

    return apply


async def _apply(conn: BaseDBAsyncClient, lock: Lock, event: LockEvent, now: datetime) -> Outcome:
    outcome = Outcome(audits=[Audit(f"lock:{lock.key}", f"lock.{event.kind}", f"lock:{lock.key}")])
    code = None
    if event.code_ref is not None:
        code = (
            await AccessCode.filter(lock_id=lock.id, provider_ref=event.code_ref)
            .using_db(conn)
            .first()
        )
    if event.kind == LockEventKind.CODE_SET and code is not None:
        confirmed = await move_code(
            conn, code.id, to=AccessCodeState.SET, expect=AccessCodeState.PROGRAMMING
        )
        if confirmed:
            outcome = outcome + became_set(code, now)
    elif event.kind == LockEventKind.CODE_FAILED and code is not None:
        # Only a code the lock was to hold: one being removed meanwhile is not set again.
        failed = await move_code(
            conn,
            code.id,
            to=AccessCodeState.FAILED,
            expect=(AccessCodeState.PROGRAMMING, AccessCodeState.SET),
            last_error=event.detail[:500],
        )
        if failed:
            outcome.alerts.append(rejected_alert(lock, event.detail or "failed to set on device"))
            outcome.effects.append(
                Effect(
                    SET_EFFECT,
                    f"access:set:{code.id}:after:{event.event_id}",
                    {"code": code.id, "fresh": True},
                )
            )
    elif event.kind == LockEventKind.CODE_REMOVED and code is not None:
        outcome = outcome + await _code_removed(conn, lock, code, event, now)
    elif event.kind == LockEventKind.DEVICE_OFFLINE:
        await Lock.filter(id=lock.id).using_db(conn).update(online=False)
        outcome.alerts.append(
            Alert(
                AlertKind.LOCK_OFFLINE,
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
                AlertKind.LOCK_BATTERY,
                f"lock-battery:{lock.key}",
                "ops.lock_battery",
                {"lock": lock.label, "at_risk": await _at_risk(conn, lock, now)},
            )
        )
    return outcome


async def _code_removed(
    conn: BaseDBAsyncClient, lock: Lock, code: AccessCode, event: LockEvent, now: datetime
) -> Outcome:
    if code.state in (AccessCodeState.SET, AccessCodeState.PROGRAMMING) and code.ends_at > now:
        # Taken off the lock by someone else while it should work: put it back.
        restored = await move_code(
            conn, code.id, to=AccessCodeState.PENDING, expect=code.state, provider_ref=None
        )
        if not restored:
            return Outcome()
        key = f"access:set:{code.id}:restore:{event.event_id}"
        return Outcome(effects=[Effect(SET_EFFECT, key, {"code": code.id})])
    # Off the lock: removed (a code whose window ended, or one being removed, proved gone).
    removed = await move_code(conn, code.id, to=AccessCodeState.REMOVED, expect=None)
    if removed and code.state == AccessCodeState.REMOVING:
        return removal_confirmed(code, lock, now)
    return Outcome()


async def _at_risk(conn: BaseDBAsyncClient, lock: Lock, now: datetime) -> int:
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
