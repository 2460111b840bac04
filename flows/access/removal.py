"""Taking a code off its lock (the critical ``access.remove`` effect, retried until the provider
confirms it or a person decides), proving it is gone, and what follows once it is.

A provider's answer to a deletion proves nothing (see ``flows.code_presence``): a code stays
``removing`` until the provider reports it removed or the device's own list lacks it. The lock
is asked outside any transaction; the follow-up records what it answered."""

from __future__ import annotations

from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.context import AccessContext
from flows.access.kinds import CODE_REMOVED_TIMER, LAPSES, REMOVAL_CHECK_TIMER, removal_check_key
from flows.access.lock_rules import computes_own_pin, same_code
from flows.code_presence import left_on_lock
from flows.effects import Alert, Audit, Deferred, FollowUp, Outcome, SetTimer
from locks import (
    CapabilityMissing,
    CodeStatus,
    LockProvider,
    LockRateLimited,
    LockUnavailable,
    ProgrammedCode,
)
from storage.codes import move_code
from storage.kinds import AlertKind
from storage.models import AccessCode, AccessCodeState, Lock, OutboxEffect

S = AccessCodeState


async def execute_remove(ctx: AccessContext, effect: OutboxEffect) -> FollowUp | None:
    code_id = int(str(effect.payload["code"]))
    code = await AccessCode.get(id=code_id).select_related("lock")
    lock = code.lock
    now = ctx.clock.now()
    made_late = effect.payload.get("ref")
    if code.state == S.REMOVED:
        if made_late is not None:
            await _take_off(ctx, lock, str(made_late))
        return None
    if code.provider_ref is None:
        unrecorded = await find_unrecorded(ctx, code, lock)
        if unrecorded is not None and unrecorded.offline:
            return _lapses(code, lock, now, ref=unrecorded.provider_ref)
        if unrecorded is not None:
            await ctx.provider(lock).delete_code(lock.device_id, unrecorded.provider_ref)
        return _never_on_lock(code)
    if code.offline and not computes_own_pin(lock):
        # An offline backup (issued while the lock was unreachable) cannot be removed
        # through the vendor's API; it lapses at its end.
        return _lapses(code, lock, now)
    provider = ctx.provider(lock)
    try:
        await provider.delete_code(lock.device_id, code.provider_ref)
    except CapabilityMissing:
        return _lapses(code, lock, now)
    except LockRateLimited as err:
        # The device has had its deletions for now (Seam: 20 a minute): the removal waits
        # its turn and goes again, not a failed attempt, no backoff, no alert.
        wait = timedelta(seconds=err.retry_after if err.retry_after is not None else 60)
        raise Deferred(now + wait, f"{lock.key} refused a deletion for its rate limit") from err
    if await still_held(provider, lock, code.provider_ref) is not None:
        # Accepted but not yet off the lock (Seam deletes on the device later): the code
        # stays removing until the provider confirms it, by its webhook or when asked.
        check = removal_check(ctx, code.id)

        async def check_later(conn: BaseDBAsyncClient) -> Outcome:
            return Outcome(timers=[check])

        return check_later

    async def removed(conn: BaseDBAsyncClient) -> Outcome:
        moved = await move_code(conn, code.id, to=S.REMOVED, last_error="")
        return removal_confirmed(code, lock, now) if moved else Outcome()

    return removed


async def _take_off(ctx: AccessContext, lock: Lock, ref: str) -> None:
    """A code made on the lock after its removal: deleted, until the lock has let it go."""
    provider = ctx.provider(lock)
    await provider.delete_code(lock.device_id, ref)
    if await still_held(provider, lock, ref) is not None:
        raise LockUnavailable("a code made after its removal is still on the lock")


def _never_on_lock(code: AccessCode) -> FollowUp:
    async def removed(conn: BaseDBAsyncClient) -> Outcome:
        await move_code(
            conn, code.id, to=S.REMOVED, expect=S.REMOVING, where={"provider_ref__isnull": True}
        )
        return Outcome()

    return removed


def _lapses(code: AccessCode, lock: Lock, now: datetime, *, ref: str | None = None) -> FollowUp:
    async def lapses(conn: BaseDBAsyncClient) -> Outcome:
        if ref is not None:
            await AccessCode.filter(id=code.id).using_db(conn).update(provider_ref=ref)
        return await cannot_revoke(conn, code, lock, now)

    return lapses


async def find_unrecorded(
    ctx: AccessContext, code: AccessCode, lock: Lock
) -> ProgrammedCode | None:
    """The code on the lock that a set attempt created without recording it (its worker
    died between the lock's answer and the database), or None.

    The lock is asked only once the code's programming time has come: no set is attempted
    before it, so a code revoked days ahead never reached the lock."""
    request = ctx.request(code, lock)
    if not code.pin_encrypted and not request.offline:
        return None
    if ctx.clock.now() < code.starts_at - (await ctx.lead_times_of(lock)).code_lead:
        return None
    existing = await ctx.provider(lock).list_codes(lock.device_id)
    return next((c for c in existing if same_code(c, request)), None)


async def still_held(provider: LockProvider, lock: Lock, provider_ref: str) -> CodeStatus | None:
    """How the lock still holds a code after its deletion, or None once that is proved."""
    return await left_on_lock(provider, lock.device_id, provider_ref)


def removal_check(ctx: AccessContext, code_id: int, waited: timedelta | None = None) -> SetTimer:
    """The next look at a deletion on its way to the lock (one that waits long, on a lock
    that is offline, is looked at less often)."""
    wait = ctx.policy.removal_check_every
    if waited is not None:
        wait = min(max(waited * 2, wait), ctx.policy.removal_check_max)
    return SetTimer(
        REMOVAL_CHECK_TIMER,
        ctx.clock.now() + wait,
        removal_check_key(code_id),
        {"code": code_id, "wait": int(wait.total_seconds())},
    )


async def cannot_revoke(
    conn: BaseDBAsyncClient, code: AccessCode, lock: Lock, now: datetime
) -> Outcome:
    """Offline codes cannot be taken off the lock: they lapse at their own end (and the code
    says so, so nobody is told it no longer works)."""
    outcome = Outcome(audits=[Audit("system", "access.lapses", f"code:{code.id}")])
    if code.ends_at > now:
        outcome.alerts.append(
            Alert(
                AlertKind.CODE_CANNOT_BE_REVOKED,
                f"code-cannot-be-revoked:{code.id}",
                "ops.code_cannot_be_revoked",
                {"lock": lock.label, "until": code.ends_at.isoformat()},
            )
        )
    if not await move_code(conn, code.id, to=S.REMOVED, last_error=LAPSES):
        await (
            AccessCode.filter(id=code.id, state=S.REMOVED).using_db(conn).update(last_error=LAPSES)
        )
    return outcome


def removal_confirmed(code: AccessCode, lock: Lock, now: datetime) -> Outcome:
    """What follows a code proved off its lock: audited, and for a booking's code a look at
    whether its renter, if told it is being switched off, can now be told it is."""
    outcome = Outcome(
        audits=[Audit("system", "access.removed", f"code:{code.id}", {"lock": lock.key})]
    )
    if code.booking_id is not None:
        outcome.timers.append(
            SetTimer(
                CODE_REMOVED_TIMER,
                now,
                f"access:code-removed:{code.id}",
                {"booking": code.booking_id, "code": code.id},
            )
        )
    return outcome
