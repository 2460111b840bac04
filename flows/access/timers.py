"""The access-code lifecycle's timer handlers. Each reads without a transaction (asking the lock
where it must) and returns an Outcome; its state changes are ``writes``, which the timer runner
makes in the transaction that completes the timer, guarded by the transition table."""

from __future__ import annotations

import logging
from datetime import timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.confirmation import confirm_poll, look_up, record_set
from flows.access.context import AccessContext
from flows.access.kinds import (
    CODE_OFF_TOLD,
    LAPSES,
    RECONCILE_KEY,
    RECONCILE_TIMER,
    confirm_key,
    deadline_key,
    program_key,
    remove_again,
    remove_effect,
    set_effect,
)
from flows.access.lock_rules import takes_offline_backup
from flows.access.offline import offline_backup, reported_offline
from flows.access.reconcile import reconcile
from flows.access.removal import removal_check, removal_confirmed, still_held
from flows.effects import Alert, Audit, CancelTimer, Outcome, SetTimer, Write
from flows.timers import TimerFired
from locks import CodeStatus, LockError
from storage.codes import move_code
from storage.kinds import AlertKind
from storage.models import AccessCode, AccessCodeState, AuditEvent, Booking, BookingState, Lock
from storage.timers import postpone_timer

log = logging.getLogger(__name__)

S = AccessCodeState


async def on_program_due(ctx: AccessContext, event: TimerFired) -> Outcome:
    code_id = int(event.payload["code"])
    code = await AccessCode.get_or_none(id=code_id).select_related("lock")
    if code is None or code.state != S.PENDING:
        return Outcome()
    return Outcome(writes=[await programming(ctx, code)])


async def programming(ctx: AccessContext, code: AccessCode, *, deadline: bool = True) -> Write:
    """The code is being programmed from now: marked so with the effect that programs it (a
    revocation since stands, and nothing is queued). Its deadline (unless it is the deadline
    that asks) is counted from this first attempt: a code made at the last minute has
    ``not_set_after`` to be set before ops hear of it."""
    confirm_before = (await ctx.lead_times_of(code.lock)).confirm_before
    due = max(code.starts_at - confirm_before, ctx.clock.now() + ctx.policy.not_set_after)

    async def queue(conn: BaseDBAsyncClient) -> Outcome:
        if not await move_code(conn, code.id, to=S.PROGRAMMING, expect=S.PENDING):
            return Outcome()
        if deadline:
            await postpone_timer(conn, deadline_key(code.id), due)
        return Outcome(effects=[set_effect(code.id)])

    return queue


async def on_revoke_due(ctx: AccessContext, event: TimerFired) -> Outcome:
    code_id = int(event.payload["code"])
    now = ctx.clock.now()

    async def window_ended(conn: BaseDBAsyncClient) -> Outcome:
        # Marked removing in the transaction that queues its removal and finishes this
        # timer: a commit that fails (a crash, a claim taken over) leaves the code as it
        # was, and the timer fires again. Only a code whose window has ended: one moved
        # later meanwhile (an extension) keeps working until its own timer at its new end.
        revoking = await move_code(conn, code_id, to=S.REMOVING, where={"ends_at__lte": now})
        if not revoking:
            return Outcome()
        return Outcome(
            timers=[
                CancelTimer(program_key(code_id)),
                CancelTimer(deadline_key(code_id)),
                CancelTimer(confirm_key(code_id)),
            ],
            effects=[remove_effect(code_id)],
            audits=[Audit("system", "access.window_ended", f"code:{code_id}")],
        )

    return Outcome(writes=[window_ended])


async def on_confirm_due(ctx: AccessContext, event: TimerFired) -> Outcome:
    """Ask the lock whether a code still programming is set; look again later, sooner as
    it is needed, until it is set, refused or gone."""
    code_id = int(event.payload["code"])
    code = await AccessCode.get_or_none(id=code_id).select_related("lock")
    now = ctx.clock.now()
    if code is None or code.state != S.PROGRAMMING or code.ends_at <= now:
        return Outcome()
    fields = await look_up(ctx, code)
    if fields is None:
        return Outcome(timers=[await confirm_poll(ctx, code, now)])
    found = fields

    async def is_set(conn: BaseDBAsyncClient) -> Outcome:
        return await record_set(conn, code, found, now) or Outcome()

    return Outcome(writes=[is_set])


async def on_deadline(ctx: AccessContext, event: TimerFired) -> Outcome:
    """The window opens soon: a code that is not confirmed set is an alert, and a backup."""
    code_id = int(event.payload["code"])
    code = await AccessCode.get_or_none(id=code_id).select_related("lock")
    if code is None or code.state not in (S.PENDING, S.PROGRAMMING, S.FAILED):
        return Outcome()
    now = ctx.clock.now()
    if code.state == S.PROGRAMMING and code.provider_ref:
        fields = await look_up(ctx, code)
        if fields is not None:
            found = fields

            async def is_set(conn: BaseDBAsyncClient) -> Outcome:
                return await record_set(conn, code, found, now) or Outcome()

            return Outcome(writes=[is_set])
    lock = code.lock
    outcome = Outcome(
        alerts=[
            Alert(
                AlertKind.CODE_NOT_SET,
                f"code-not-set:{lock.key}",
                "ops.code_not_set",
                {"lock": lock.label, "starts": code.starts_at.isoformat(), "state": code.state},
            )
        ]
    )
    if code.state == S.FAILED:
        # A fresh PIN where the lock refused this one; programmed at once.
        outcome.effects.append(set_effect(code_id, f"access:set:{code_id}:backup", fresh=True))
    elif code.state == S.PENDING:
        outcome.writes.append(await programming(ctx, code, deadline=False))
    if (
        code.state != S.FAILED
        and takes_offline_backup(lock, code)
        and await reported_offline(ctx, lock)
    ):
        return Outcome(writes=[offline_backup(ctx, code, lock, otherwise=outcome)])
    return outcome


async def on_removal_check(ctx: AccessContext, event: TimerFired) -> Outcome:
    """Has the provider taken the code off its lock? Until it says so the code stays
    removing and is asked after again; a deletion the lock did not take is sent again."""
    code_id = int(event.payload["code"])
    code = await AccessCode.get_or_none(id=code_id).select_related("lock")
    if code is None or code.state != S.REMOVING or code.provider_ref is None:
        return Outcome()
    lock = code.lock
    waited = timedelta(seconds=int(event.payload.get("wait", 0)))
    provider = ctx.providers.get(lock.provider)
    if provider is None:
        return Outcome(timers=[removal_check(ctx, code_id, waited)])
    held = await still_held(provider, lock, code.provider_ref)
    if held == CodeStatus.REMOVING:
        return Outcome(timers=[removal_check(ctx, code_id, waited)])
    now = ctx.clock.now()
    if held is not None:  # still set: the deletion was lost on the way to the lock
        return Outcome(effects=[remove_again(code_id, "check", now)])

    async def confirmed(conn: BaseDBAsyncClient) -> Outcome:
        removed = await move_code(conn, code_id, to=S.REMOVED, expect=S.REMOVING, last_error="")
        return removal_confirmed(code, lock, now) if removed else Outcome()

    return Outcome(writes=[confirmed])


async def on_code_removed(ctx: AccessContext, event: TimerFired) -> Outcome:
    """A booking's code is off its lock. A renter whose booking was cancelled was told its
    code is being switched off; once every code of it is off (none lapsing by itself, as an
    offline one does), they are told it no longer works, once."""
    booking = await Booking.get_or_none(id=int(event.payload["booking"]))
    notifier = ctx.notifier
    if notifier is None or booking is None or booking.state != BookingState.CANCELLED:
        return Outcome()
    now = ctx.clock.now()
    codes = await AccessCode.filter(booking_id=booking.id)
    if any(
        code.state not in (S.REMOVED, S.FAILED)
        or (code.last_error == LAPSES and code.ends_at > now)
        for code in codes
    ):
        return Outcome()
    renter_id, reference = booking.renter_id, booking.reference
    subject = f"booking:{reference}"

    async def tell(conn: BaseDBAsyncClient) -> Outcome:
        told = AuditEvent.filter(action=CODE_OFF_TOLD, subject=subject).using_db(conn)
        if await told.exists():
            return Outcome()
        await notifier.tell(
            conn,
            renter_id,
            "access.code_off",
            now=now,
            kind="receipt",
            params={"reference": reference},
        )
        return Outcome(audits=[Audit("system", CODE_OFF_TOLD, subject)])

    return Outcome(writes=[tell])


async def on_reconcile_due(ctx: AccessContext, event: TimerFired) -> Outcome:
    """The scheduled pass over every lock; it sets its own next run."""
    outcome = Outcome(
        timers=[
            SetTimer(RECONCILE_TIMER, ctx.clock.now() + ctx.policy.reconcile_every, RECONCILE_KEY)
        ]
    )
    for lock in await Lock.filter(retired_at__isnull=True).order_by("key"):
        if lock.provider not in ctx.providers:
            continue
        unreachable: LockError | None
        try:
            reconciliation = await reconcile(ctx, lock)
        except LockError as err:  # a stray the lock would not let go of
            unreachable = err
        else:
            outcome.writes.append(reconciliation.record)
            unreachable = reconciliation.unreachable
        if unreachable is not None:
            log.warning("reconciling %s failed: %s", lock.key, type(unreachable).__name__)
            outcome.alerts.append(
                Alert(
                    AlertKind.LOCK_UNREACHABLE,
                    f"lock-unreachable:{lock.key}",
                    "ops.lock_unreachable",
                    {"lock": lock.label},
                )
            )
    return outcome
