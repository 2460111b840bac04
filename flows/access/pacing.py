"""Code creations and updates go out at each device's pace, not in a burst past its limit.

A provider takes so many creations (updates) per device a minute (``LockProvider.pace``:
Seam documents 10 of each) and refuses the rest with 429. Every worker shares the device's
pace (``storage.pacing``): an effect takes the device's next slot; when that slot is later than
now the effect waits for it (``Deferred``: no failed attempt, no alert) holding it, and is sent
when it comes. A provider's 429 is a wait too: the device's slots start after its Retry-After
(a minute when it gives none, the window Seam's limits are counted in).

A held slot is good for ``GRACE`` after it (the dispatcher may be busy when it comes), so slots
are counted in windows of a minute and ``GRACE``: however late within its grace a call goes out,
no minute sees more than the provider takes. A held slot that came and went (the worker was
busy, or down) is given up for the device's next one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flows.access.context import AccessContext
from flows.effects import Deferred
from locks import LockRateLimited
from storage.models import Lock, OutboxEffect
from storage.pacing import PacedCall, hold_off, take_slot

__all__ = ["PacedCall", "rate_limited", "take_turn"]

MINUTE = timedelta(minutes=1)
#: How late a call may go out in its slot.
GRACE = timedelta(seconds=10)


def _per_minute(ctx: AccessContext, lock: Lock, call: PacedCall) -> int:
    pace = ctx.provider(lock).pace
    return pace.creations_per_minute if call is PacedCall.CREATION else pace.updates_per_minute


def _held(effect: OutboxEffect, call: PacedCall) -> datetime | None:
    """The slot this effect holds, if it waited for one in the claim before this one."""
    held = effect.payload.get(f"paced_{call}")
    if not isinstance(held, dict) or held.get("attempt") != effect.attempts:
        return None  # none, or one a failed attempt used already
    return datetime.fromisoformat(str(held["at"]))


async def take_turn(ctx: AccessContext, effect: OutboxEffect, lock: Lock, call: PacedCall) -> None:
    """Return when ``effect`` may send its ``call`` to ``lock`` now; raise ``Deferred`` until
    its slot when the device has had its share."""
    now = ctx.clock.now()
    held = _held(effect, call)
    if held is not None and held <= now <= held + GRACE:
        return
    if held is not None and now < held:
        raise Deferred(held, f"{lock.key} has had its {call}s for now")  # woken early
    limit = _per_minute(ctx, lock, call)
    slot = await take_slot(lock.id, call, now=now, limit=limit, window=MINUTE + GRACE)
    if slot <= now:
        return
    # The next claim has this claim's number (a wait is not an attempt): it holds the slot.
    notes = {f"paced_{call}": {"at": slot.isoformat(), "attempt": effect.attempts}}
    raise Deferred(slot, f"{lock.key} has had its {call}s for now", notes)


async def rate_limited(
    ctx: AccessContext, lock: Lock, call: PacedCall, err: LockRateLimited
) -> Deferred:
    """The provider refused ``call`` for its limit: the device's slots start after its
    Retry-After, and the effect waits for one of them."""
    wait = timedelta(seconds=err.retry_after) if err.retry_after is not None else MINUTE
    until = ctx.clock.now() + wait
    await hold_off(lock.id, call, until)
    return Deferred(until, f"{lock.key} refused a {call} for its rate limit")
