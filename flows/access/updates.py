"""Moving a code on its lock to a new window (the ``access.update`` effect): the lock is asked
outside any transaction, and the follow-up records what it holds now."""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.confirmation import became_set, confirm_poll
from flows.access.context import AccessContext
from flows.access.kinds import CODE_NOT_MOVED_TIMER
from flows.access.lock_rules import rejected_alert
from flows.access.pacing import PacedCall, rate_limited, take_turn
from flows.effects import Audit, FollowUp, Outcome, SetTimer
from locks import CodeStatus, LockRateLimited, LockRejected
from storage.codes import move_code
from storage.models import AccessCode, AccessCodeState, Lock, OutboxEffect


async def execute_update(ctx: AccessContext, effect: OutboxEffect) -> FollowUp | None:
    code_id = int(str(effect.payload["code"]))
    code = await AccessCode.get(id=code_id).select_related("lock")
    if (
        code.state not in (AccessCodeState.SET, AccessCodeState.PROGRAMMING)
        or not code.provider_ref
        or code.offline  # computed from its window: replaced, never moved
    ):
        return None
    lock = code.lock
    await take_turn(ctx, effect, lock, PacedCall.UPDATE)
    try:
        moved = await ctx.provider(lock).update_code_window(
            lock.device_id, code.provider_ref, code.starts_at, code.ends_at
        )
    except LockRateLimited as err:
        raise await rate_limited(ctx, lock, PacedCall.UPDATE, err) from err
    except LockRejected as err:
        return not_moved(ctx, code, lock, err)
    now = ctx.clock.now()
    # What the lock holds now: set with the new window, or setting it again (looked up).
    if moved.status == CodeStatus.SET:
        followups = became_set(code, now)

        async def set_again(conn: BaseDBAsyncClient) -> Outcome:
            return followups

        return set_again
    poll = await confirm_poll(ctx, code, now)

    async def setting_again(conn: BaseDBAsyncClient) -> Outcome:
        await move_code(conn, code.id, to=AccessCodeState.PROGRAMMING, expect=AccessCodeState.SET)
        return Outcome(timers=[poll])

    return setting_again


def not_moved(ctx: AccessContext, code: AccessCode, lock: Lock, err: LockRejected) -> FollowUp:
    """The lock refused the new window: ops hear of it, and so does the renter's journey."""
    now = ctx.clock.now()
    outcome = Outcome(
        alerts=[rejected_alert(lock, str(err.reason))],
        audits=[
            Audit("system", "access.not_moved", f"code:{code.id}", {"reason": str(err.reason)})
        ],
    )
    if code.booking_id is not None:
        outcome.timers.append(
            SetTimer(
                CODE_NOT_MOVED_TIMER,
                now,
                f"access:not-moved:{code.id}",
                {"booking": code.booking_id, "code": code.id},
            )
        )

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        return outcome

    return record
