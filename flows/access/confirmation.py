"""Learning that a code is set on its lock: looked up from the provider (polled, sooner as the
code is needed), or told by its webhook; and what follows once it is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.context import AccessContext
from flows.access.kinds import CODE_SET_TIMER, CONFIRM_TIMER, confirm_key, deadline_key
from flows.effects import CancelTimer, Outcome, SetTimer
from locks import CodeStatus, LockError
from storage.codes import move_code
from storage.journal import resolve_alert
from storage.models import AccessCode, AccessCodeState, Lock, Timer, TimerState


async def look_up(ctx: AccessContext, code: AccessCode) -> dict[str, Any] | None:
    """Ask the provider whether a code still programming is set now: what to store with its
    move to ``set`` (the PIN of a code the vendor computes), or None while it is not."""
    provider = ctx.providers.get(code.lock.provider)
    if provider is None or code.provider_ref is None:
        return None
    try:
        found = await provider.get_code(code.lock.device_id, code.provider_ref)
    except LockError:
        return None
    if found is None or found.status != CodeStatus.SET:
        return None
    fields: dict[str, Any] = {}
    if found.offline or not code.pin_encrypted:  # a computed PIN is the vendor's
        if not found.pin:
            return None
        fields["pin_encrypted"] = ctx.sealer.seal(found.pin)
    return fields


async def record_set(
    conn: BaseDBAsyncClient | None, code: AccessCode, fields: dict[str, Any], now: datetime
) -> Outcome | None:
    """The code is set on its lock: stored so, if it was still programming; what follows, or
    None when it had moved on (revoked, confirmed by a webhook first)."""
    moved = await move_code(
        conn, code.id, to=AccessCodeState.SET, expect=AccessCodeState.PROGRAMMING, **fields
    )
    return became_set(code, now) if moved else None


async def confirm_poll(ctx: AccessContext, code: AccessCode, now: datetime) -> SetTimer:
    """The next look-up, sooner as the code is needed: by its window's start, or for a
    booking's code by when its PIN is due to the renter (the PIN lead before the window,
    as the journey sends it), whichever comes first."""
    needed_at = code.starts_at
    if code.booking_id is not None:
        needed_at = min(needed_at, code.starts_at - (await ctx.lead_times_of(code.lock)).pin_lead)
    wait = ctx.policy.confirm_poll_after(needed_at - now)
    return SetTimer(CONFIRM_TIMER, now + wait, confirm_key(code.id), {"code": code.id})


def became_set(code: AccessCode, now: datetime) -> Outcome:
    """What follows a code becoming set, however Keyturn learnt it (the create answer, a
    look-up, a webhook): no more look-ups, its lock's "not set" alert resolved once no other
    code there is overdue, and a booking's PIN sent at once when due."""
    timers: list[SetTimer | CancelTimer] = [CancelTimer(confirm_key(code.id))]
    if code.booking_id is not None:
        timers.append(
            SetTimer(
                CODE_SET_TIMER,
                now,
                f"access:code-set:{code.id}",
                {"booking": code.booking_id, "code": code.id},
            )
        )

    async def resolve_not_set(conn: BaseDBAsyncClient) -> Outcome:
        unset = await (
            AccessCode.filter(
                lock_id=code.lock_id,
                state__in=(
                    AccessCodeState.PENDING,
                    AccessCodeState.PROGRAMMING,
                    AccessCodeState.FAILED,
                ),
                ends_at__gt=now,
            )
            .exclude(id=code.id)
            .using_db(conn)
        )
        waiting = await (
            Timer.filter(key__in=[deadline_key(c.id) for c in unset], state=TimerState.PENDING)
            .using_db(conn)
            .count()
        )
        if waiting == len(unset):  # none past its deadline
            lock = await Lock.filter(id=code.lock_id).using_db(conn).get()
            await resolve_alert(conn, group_key=f"code-not-set:{lock.key}", now=now, by="the lock")
        return Outcome()

    return Outcome(timers=timers, writes=[resolve_not_set])
