"""Programming a code onto its lock (the ``access.set`` effect, run by the outbox dispatcher at
least once). The lock is asked outside any transaction; what it answered is recorded by the
follow-up the dispatcher commits with the effect's completion, through the guarded transitions
of ``storage.codes`` (so a revocation while the lock answered stands)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.confirmation import became_set, confirm_poll, look_up, record_set
from flows.access.context import AccessContext
from flows.access.kinds import LIVE_STATES, deadline_key, remove_again, revoke_timer, set_effect
from flows.access.lock_rules import computes_own_pin, lock_sets_pin, rejected_alert, same_code
from flows.access.offline import whole_hours
from flows.access.pacing import PacedCall, rate_limited, take_turn
from flows.access.planning import plan_codes
from flows.access.removal import cannot_revoke
from flows.effects import Audit, FollowUp, Outcome
from locks import (
    CodeRequest,
    CodeStatus,
    LockError,
    LockProvider,
    LockRateLimited,
    LockRejected,
    ProgrammedCode,
    RejectionReason,
)
from locks.pins import generate_pin
from locks.port import constraints_from_json
from locks.windows import AccessWindow
from storage.codes import move_code
from storage.models import AccessCode, AccessCodeState, Booking, Lock, OutboxEffect
from storage.timers import postpone_timer

log = logging.getLogger(__name__)

S = AccessCodeState


@dataclass(frozen=True)
class Attempt:
    """One attempt to program a code, as its follow-up records it."""

    code: AccessCode
    lock: Lock
    #: On the code's first attempt: its deadline is put off to this at least, so a code made
    #: at the last minute has ``not_set_after`` to be set before ops hear of it.
    deadline_due: datetime | None
    #: The whole hours an igloohome code is computed for, where they differ from its window.
    whole_hours: AccessWindow | None


async def execute_set(ctx: AccessContext, effect: OutboxEffect) -> FollowUp | None:
    code_id = int(str(effect.payload["code"]))
    code = await AccessCode.get(id=code_id).select_related("lock")
    if effect.payload.get("fresh") and code.state == S.FAILED:
        return await fresh_pin(ctx, code, effect.idempotency_key)
    if code.state not in (S.PENDING, S.PROGRAMMING):
        return None  # already set, or revoked meanwhile
    lock = code.lock
    provider = ctx.provider(lock)
    if code.offline and code.provider_ref and not computes_own_pin(lock):
        # Made already: it can only be waited for, never remade.
        return await _waited_for(ctx, code)
    # An attempt before this one may have reached the lock without its answer being recorded.
    retried = effect.attempts > 1
    attempt = await _attempt(ctx, code, lock, first=not retried)
    request = ctx.request(code, lock)
    if request.pin is not None and not request.offline:
        request = replace(request, common_key=await common_key(ctx, code, lock))
    if retried and request.offline:
        # An offline code has no PIN to look for: an earlier attempt that created it without
        # recording it (its worker died) is found by its name and window, not created twice.
        # A lock that cannot be listed now fails this attempt; it is retried.
        existing = await provider.list_codes(lock.device_id)
        earlier = next((c for c in existing if same_code(c, request)), None)
        if earlier is not None:
            return await store_programmed(ctx, attempt, earlier)
    await take_turn(ctx, effect, lock, PacedCall.CREATION)
    try:
        programmed = await provider.create_code(request)
    except LockRateLimited as err:
        raise await rate_limited(ctx, lock, PacedCall.CREATION, err) from err
    except LockRejected as err:
        if err.reason == RejectionReason.DUPLICATE_CODE:
            adopted = await adopt(provider, lock, request)
            if adopted is not None:
                return await store_programmed(ctx, attempt, adopted)
        return fail(ctx, code, lock, err)
    return await store_programmed(ctx, attempt, programmed)


async def _waited_for(ctx: AccessContext, code: AccessCode) -> FollowUp | None:
    fields = await look_up(ctx, code)
    if fields is None:
        return None
    now = ctx.clock.now()

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        return await record_set(conn, code, fields, now) or Outcome()

    return record


async def _attempt(ctx: AccessContext, code: AccessCode, lock: Lock, *, first: bool) -> Attempt:
    deadline_due = None
    if first:
        confirm_before = (await ctx.lead_times_of(lock)).confirm_before
        deadline_due = max(
            code.starts_at - confirm_before, ctx.clock.now() + ctx.policy.not_set_after
        )
    hours = await whole_hours(code, lock) if computes_own_pin(lock) else None
    if hours is not None:
        code.starts_at, code.ends_at = hours.starts_at, hours.ends_at  # asked of the lock so
    return Attempt(code, lock, deadline_due, hours)


async def store_programmed(
    ctx: AccessContext, attempt: Attempt, programmed: ProgrammedCode
) -> FollowUp:
    """The lock holds the code (set, or setting it): the follow-up that records so."""
    code, lock = attempt.code, attempt.lock
    state = S.SET if programmed.status == CodeStatus.SET else S.PROGRAMMING
    fields: dict[str, Any] = {
        "provider_ref": programmed.provider_ref,
        "offline": programmed.offline,
        "last_error": "",
    }
    if programmed.pin and (programmed.offline or not code.pin_encrypted):
        fields["pin_encrypted"] = ctx.sealer.seal(programmed.pin)  # the vendor's own PIN
    now = ctx.clock.now()
    poll = await confirm_poll(ctx, code, now)

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        await move_code(conn, code.id, to=S.PROGRAMMING, expect=S.PENDING)
        if not await move_code(conn, code.id, to=state, expect=S.PROGRAMMING, **fields):
            return await _made_after_revocation(conn, code, lock, programmed, now)
        outcome = became_set(code, now) if state == S.SET else Outcome(timers=[poll])
        if attempt.whole_hours is not None:
            hours = attempt.whole_hours
            await (
                AccessCode.filter(id=code.id)
                .using_db(conn)
                .update(starts_at=hours.starts_at, ends_at=hours.ends_at)
            )
            outcome.timers.append(revoke_timer(code.id, hours.ends_at))
        if attempt.deadline_due is not None:
            await postpone_timer(conn, deadline_key(code.id), attempt.deadline_due)
        log.info("access code %s is %s on %s", code.id, state, lock.key)
        return outcome

    return record


async def _made_after_revocation(
    conn: BaseDBAsyncClient,
    code: AccessCode,
    lock: Lock,
    programmed: ProgrammedCode,
    now: datetime,
) -> Outcome:
    """Revoked while the lock was being programmed: the new code is taken off again (its
    reference kept, so its removal finds it), or, an offline one that cannot be, reported."""
    await AccessCode.filter(id=code.id).using_db(conn).update(provider_ref=programmed.provider_ref)
    if programmed.offline:
        return await cannot_revoke(conn, code, lock, now)
    return Outcome(effects=[remove_again(code.id, "made-late", now, ref=programmed.provider_ref)])


async def adopt(provider: LockProvider, lock: Lock, request: CodeRequest) -> ProgrammedCode | None:
    """A retried create whose first try reached the lock: take the code already there."""
    try:
        existing = await provider.list_codes(lock.device_id)
    except LockError:
        return None
    return next((c for c in existing if same_code(c, request)), None)


async def common_key(ctx: AccessContext, code: AccessCode, lock: Lock) -> str | None:
    """Seam's ``common_code_key`` for a booking's codes that share one PIN, when every one
    of those codes is on a Seam lock: Seam then keeps them one PIN across the devices."""
    if code.booking_id is None or lock.provider != "seam" or not code.pin_encrypted:
        return None
    siblings = await AccessCode.filter(
        booking_id=code.booking_id,
        starts_at=code.starts_at,
        ends_at=code.ends_at,
        state__in=LIVE_STATES,
    ).select_related("lock")
    pin = ctx.sealer.open(code.pin_encrypted)
    if len(siblings) < 2 or any(
        sibling.lock.provider != "seam"
        or not sibling.pin_encrypted
        or ctx.sealer.open(sibling.pin_encrypted) != pin
        for sibling in siblings
    ):
        return None
    starts, ends = (moment.astimezone(UTC) for moment in (code.starts_at, code.ends_at))
    return f"keyturn-booking-{code.booking_id}-{starts:%Y%m%dT%H%M}-{ends:%Y%m%dT%H%M}"


async def sibling_pins(ctx: AccessContext, code: AccessCode) -> set[str]:
    """The PINs of the live codes for the same booking on its other locks."""
    if code.booking_id is None:
        return set()
    rows = await AccessCode.filter(
        booking_id=code.booking_id, state__in=LIVE_STATES, lock_id__not=code.lock_id
    )
    return {ctx.sealer.open(row.pin_encrypted) for row in rows if row.pin_encrypted}


async def fresh_pin(ctx: AccessContext, code: AccessCode, key: str) -> FollowUp | None:
    """A refused code is tried again: with a fresh PIN where Keyturn chose it, asked again
    as it is where the vendor computes it, without one where the lock chooses. The follow-up
    stores it pending (only a code still refused: a revocation since stands) and queues its
    programming, so every attempt at it asks the lock for the same PIN."""
    lock = code.lock
    fields: dict[str, Any] = {"last_error": ""}
    if code.offline:
        pass  # the vendor computes it: asked again as it is
    elif lock_sets_pin(lock):
        fields["pin_encrypted"] = ""  # the lock chooses again when asked without a PIN
    else:
        constraints = constraints_from_json(lock.code_constraints)
        if not constraints.keyturn_may_choose:
            return None  # stays refused: ops were told when it was planned
        taken = await ctx.taken(None, lock, AccessWindow(code.starts_at, code.ends_at))
        if code.pin_encrypted:
            taken.add(ctx.sealer.open(code.pin_encrypted))
        # Nor one of the booking's other doors: an item's PIN sent after the gates' stays its own.
        taken |= await sibling_pins(ctx, code)
        fields["pin_encrypted"] = ctx.sealer.seal(generate_pin(constraints, taken=taken))

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        if not await move_code(conn, code.id, to=S.PENDING, expect=S.FAILED, **fields):
            return Outcome()
        return Outcome(effects=[set_effect(code.id, f"{key}:set")])

    return record


def fail(ctx: AccessContext, code: AccessCode, lock: Lock, err: LockRejected) -> FollowUp:
    """The lock refused the code: ops hear of it; a duplicate PIN is tried again fresh, and a
    refused offline backup gives way to an ordinary code again."""
    reason = str(err.reason)

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        await move_code(conn, code.id, to=S.PROGRAMMING, expect=S.PENDING)
        failed = await move_code(
            conn, code.id, to=S.FAILED, expect=S.PROGRAMMING, last_error=f"{reason}: {err}"[:500]
        )
        if not failed:
            return Outcome()  # revoked while the lock answered: nothing to retry, nobody to tell
        outcome = Outcome(
            alerts=[rejected_alert(lock, reason)],
            audits=[Audit("system", "access.failed", f"code:{code.id}", {"reason": reason})],
        )
        if err.reason == RejectionReason.DUPLICATE_CODE:
            outcome.effects.append(set_effect(code.id, f"access:set:{code.id}:fresh", fresh=True))
        if code.offline and code.booking_id and not computes_own_pin(lock):
            # A refused offline backup: the renter gets an ordinary code again, set when the
            # lock is back, rather than nothing.
            await move_code(conn, code.id, to=S.REMOVED, expect=S.FAILED)
            booking = await Booking.filter(id=code.booking_id).using_db(conn).get()
            window = AccessWindow(code.starts_at, code.ends_at)
            outcome = outcome + await plan_codes(
                ctx, conn, [lock], window, label=code.label, booking=booking, deadline=False
            )
        return outcome

    return record
