"""Planning codes, moving them to a new window and revoking them, inside the caller's unit of
work: a code is planned in the transaction that decides it (a confirmed booking, a staff code),
with timers that program it ahead of its window, check it is set by a deadline, and revoke it
when the window ends."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.context import AccessContext
from flows.access.kinds import (
    DEADLINE_TIMER,
    LIVE_STATES,
    PIN_RULES_UNKNOWN,
    PROGRAM_TIMER,
    UPDATE_EFFECT,
    confirm_key,
    deadline_key,
    program_key,
    remove_again,
    remove_effect,
    revoke_key,
    revoke_timer,
)
from flows.access.lock_rules import (
    computes_own_pin,
    lock_sets_pin,
    may_choose_pin,
    pin_rules_alert,
)
from flows.access.policy import AccessPlanError
from flows.bookings import stored_range
from flows.effects import Alert, Audit, CancelTimer, Effect, Outcome, SetTimer
from flows.lead_times import LeadTimes
from locks import LockCapability
from locks.pins import pin_for_locks
from locks.port import capabilities_from_json, constraints_from_json
from locks.windows import AccessWindow
from storage.codes import move_code
from storage.kinds import AlertKind
from storage.lock_rows import usable_locks
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AssetLock,
    Booking,
    Location,
    Lock,
    StaffMember,
)
from storage.removals import pending_removals


async def locks_for_booking(booking: Booking, conn: BaseDBAsyncClient | None = None) -> list[Lock]:
    """The asset's own locks and its location's shared gates, retired locks left out."""
    asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
    mapped = (
        await AssetLock.filter(asset_id=asset.id).using_db(conn).values_list("lock_id", flat=True)
    )
    own = await Lock.filter(id__in=list(mapped), retired_at__isnull=True).using_db(conn)
    gates = await Lock.filter(
        location_id=asset.location_id,
        shared=True,
        retired_at__isnull=True,
    ).using_db(conn)
    found = {lock.id: lock for lock in [*own, *gates]}
    if conn is not None:
        # Held until the caller commits: a lock retired at this instant is left out, and one
        # not retired stays so until the codes planned on it are stored.
        usable = await usable_locks(conn, found)
        found = {lock_id: lock for lock_id, lock in found.items() if lock_id in usable}
    return sorted(found.values(), key=lambda lk: lk.key)


async def plan_booking_codes(
    ctx: AccessContext, conn: BaseDBAsyncClient, booking: Booking
) -> Outcome:
    locks = await locks_for_booking(booking, conn)
    if not locks:
        return Outcome(
            alerts=[
                Alert(
                    AlertKind.ASSET_WITHOUT_LOCK,
                    f"asset-without-lock:{booking.asset_id}",
                    "ops.asset_without_lock",
                    {"booking": booking.reference},
                )
            ]
        )
    window = stored_range(booking)
    # An item whose PIN waits for its pickup checklist gets a PIN of its own: the location's
    # gate codes, sent first, must not open it.
    asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
    return await plan_codes(
        ctx,
        conn,
        locks,
        window,
        label=f"Keyturn {booking.reference}",
        booking=booking,
        one_pin=not asset.pin_after_checklist,
    )


async def plan_staff_code(
    ctx: AccessContext,
    conn: BaseDBAsyncClient,
    staff: StaffMember,
    lock: Lock,
    window: AccessWindow,
    label: str,
) -> Outcome:
    lock_location = await Lock.filter(id=lock.id).using_db(conn).get().prefetch_related("location")
    scope = list(staff.location_scope)
    if scope and lock_location.location.slug not in scope:
        raise AccessPlanError(f"{staff.name} may not open locks at {lock_location.location.name}")
    outcome = await plan_codes(ctx, conn, [lock], window, label=label or staff.name, staff=staff)
    outcome.audits.append(
        Audit(
            f"staff:{staff.telegram_user_id}",
            "access.staff_code",
            f"lock:{lock.key}",
            {"until": window.ends_at.isoformat(), "label": label},
        )
    )
    return outcome


async def plan_codes(
    ctx: AccessContext,
    conn: BaseDBAsyncClient,
    locks: list[Lock],
    window: AccessWindow,
    *,
    label: str,
    booking: Booking | None = None,
    staff: StaffMember | None = None,
    deadline: bool = True,
    one_pin: bool = True,
    avoid: Collection[str] = (),
) -> Outcome:
    """Codes for ``locks`` over ``window``, with their timers. ``deadline``: check by the
    confirm deadline that they are set (no check for the code that follows a refused
    offline backup, so the deadline does not ask for another). ``avoid``: PINs none may have."""
    now = ctx.clock.now()
    leads = {
        location.id: ctx.lead_times_at(location)
        for location in await Location.filter(id__in={lock.location_id for lock in locks}).using_db(
            conn
        )
    }
    chosen, unknown = await _choose_pins(ctx, conn, locks, window, one_pin, avoid)
    outcome = Outcome()
    for lock in locks:
        pin = chosen.get(lock.key)
        refused = lock.key in unknown
        code = await AccessCode.create(
            booking=booking,
            staff=staff,
            lock=lock,
            label=label[:100],
            pin_encrypted=ctx.sealer.seal(pin) if pin else "",
            starts_at=window.starts_at,
            ends_at=window.ends_at,
            state=AccessCodeState.FAILED if refused else AccessCodeState.PENDING,
            offline=pin is None and not lock_sets_pin(lock) and not refused,
            last_error=PIN_RULES_UNKNOWN if refused else "",
            using_db=conn,
        )
        if refused:
            outcome.alerts.append(
                pin_rules_alert(lock, constraints_from_json(lock.code_constraints))
            )
        outcome.timers += _code_timers(ctx, code, leads[lock.location_id], now, deadline)
        outcome.audits.append(
            Audit(
                "system",
                "access.planned",
                f"code:{code.id}",
                {
                    "lock": lock.key,
                    "booking": booking.reference if booking else None,
                    "from": window.starts_at.isoformat(),
                    "until": window.ends_at.isoformat(),
                },
            )
        )
    return outcome


async def _choose_pins(
    ctx: AccessContext,
    conn: BaseDBAsyncClient,
    locks: list[Lock],
    window: AccessWindow,
    one_pin: bool = True,
    avoid: Collection[str] = (),
) -> tuple[dict[str, str], set[str]]:
    """The PIN Keyturn chooses for each lock it may choose one for (one PIN for all where the
    locks allow it), and the locks whose PIN rules Keyturn does not know: those (that cannot
    choose a PIN themselves, as Seam does) get no PIN guessed; their code is refused at once
    and ops hear of it."""
    pinned = [lock for lock in locks if not computes_own_pin(lock) and not lock_sets_pin(lock)]
    unknown = {lock.key for lock in pinned if not may_choose_pin(lock)}
    pinned = [lock for lock in pinned if lock.key not in unknown]
    if not pinned:
        return {}, unknown
    per_lock = {
        lock.key: (
            constraints_from_json(lock.code_constraints),
            {*await ctx.taken(conn, lock, window), *avoid},
        )
        for lock in pinned
    }
    return pin_for_locks(per_lock, one_pin=one_pin), unknown


def _code_timers(
    ctx: AccessContext, code: AccessCode, lead: LeadTimes, now: datetime, deadline: bool
) -> list[SetTimer | CancelTimer]:
    program_at = max(now, code.starts_at - lead.code_lead)
    confirm_by = max(code.starts_at - lead.confirm_before, program_at + ctx.policy.not_set_after)
    timers: list[SetTimer | CancelTimer] = [
        SetTimer(PROGRAM_TIMER, program_at, program_key(code.id), {"code": code.id}),
        revoke_timer(code.id, code.ends_at),
    ]
    if deadline:
        timers.append(
            SetTimer(DEADLINE_TIMER, confirm_by, deadline_key(code.id), {"code": code.id})
        )
    return timers


async def revoke(
    ctx: AccessContext,
    conn: BaseDBAsyncClient,
    codes: list[AccessCode],
    *,
    actor: str,
    reason: str,
) -> Outcome:
    outcome = Outcome()
    removing = [code.id for code in codes if code.state == AccessCodeState.REMOVING]
    pending = await pending_removals(conn, removing) if removing else set()
    for code in codes:
        if code.state == AccessCodeState.REMOVING and code.id not in pending:
            # Marked removing, but its removal was lost: asked for again, it is queued.
            outcome.effects.append(remove_again(code.id, "revoke", ctx.clock.now()))
        if code.state in (AccessCodeState.REMOVED, AccessCodeState.REMOVING):
            continue
        # From whatever live state it is in now (it may have moved on since it was read).
        await move_code(conn, code.id, to=AccessCodeState.REMOVING)
        outcome.timers += [
            CancelTimer(program_key(code.id)),
            CancelTimer(deadline_key(code.id)),
            CancelTimer(confirm_key(code.id)),
            CancelTimer(revoke_key(code.id)),
        ]
        outcome.effects.append(remove_effect(code.id))
        outcome.audits.append(Audit(actor, "access.revoked", f"code:{code.id}", {"reason": reason}))
    return outcome


_NOT_ON_LOCK = (AccessCodeState.PENDING, AccessCodeState.FAILED)


async def _move_in_place(
    conn: BaseDBAsyncClient, code: AccessCode, window: AccessWindow, outcome: Outcome
) -> bool:
    """Move ``code`` to ``window`` where it stands, if it can be; False when it must be replaced.

    A code not yet on its lock is moved here only; one on a lock that updates windows is moved
    there too. An offline code is computed from its window: it cannot be moved, only replaced.
    """
    lock = code.lock
    can_update = not code.offline and LockCapability.UPDATE_WINDOW in capabilities_from_json(
        lock.capabilities, lock.provider
    )
    if code.offline or not (can_update or code.state in _NOT_ON_LOCK):
        return False
    await (
        AccessCode.filter(id=code.id)
        .using_db(conn)
        .update(starts_at=window.starts_at, ends_at=window.ends_at)
    )
    outcome.timers.append(revoke_timer(code.id, window.ends_at))
    if code.state not in _NOT_ON_LOCK:
        outcome.effects.append(
            Effect(
                UPDATE_EFFECT,
                f"access:update:{code.id}:{window.ends_at.isoformat()}",
                {"code": code.id},
            )
        )
    return True


async def move_window(
    ctx: AccessContext, conn: BaseDBAsyncClient, booking: Booking, window: AccessWindow
) -> tuple[Outcome, list[str]]:
    """Move a booking's codes to ``window``: in place where the lock can, else replaced.

    Returns the outcome and the labels of the locks whose PIN changes, so the renter is told.
    """
    outcome = Outcome()
    replaced: list[Lock] = []
    codes = (
        await AccessCode.filter(
            booking_id=booking.id, state__in=(*LIVE_STATES, AccessCodeState.FAILED)
        )
        .using_db(conn)
        .prefetch_related("lock")
    )
    for code in codes:
        if await _move_in_place(conn, code, window, outcome):
            continue
        replaced.append(code.lock)
        outcome = outcome + (await revoke(ctx, conn, [code], actor="system", reason="window moved"))
    # A lock left without a live code (its code's window ended and it was revoked just as
    # the window moved) gets a new one for the new window.
    covered = {code.lock_id for code in codes}
    replaced += [lock for lock in await locks_for_booking(booking, conn) if lock.id not in covered]
    if replaced:
        asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
        kept = {lock.id for lock in replaced}
        moved = [code for code in codes if code.lock_id not in kept]
        outcome = outcome + (
            await plan_codes(
                ctx,
                conn,
                replaced,
                window,
                label=f"Keyturn {booking.reference}",
                booking=booking,
                # As when first planned: an item whose PIN waits for its pickup check never
                # shares it with the gates, whose codes the renter has already.
                one_pin=not asset.pin_after_checklist,
                avoid=_pins_of(ctx, moved) if asset.pin_after_checklist else (),
            )
        )
    return outcome, [lock.label for lock in replaced]


def _pins_of(ctx: AccessContext, codes: list[AccessCode]) -> set[str]:
    return {ctx.sealer.open(code.pin_encrypted) for code in codes if code.pin_encrypted}


async def part_item_pins(ctx: AccessContext, conn: BaseDBAsyncClient, booking: Booking) -> Outcome:
    """An item whose PIN waits for its pickup check must not share it with the location's
    gates, whose codes go out first. A booking planned before the item said so has one PIN on
    every lock: its item's codes are replaced by codes of their own. Nothing when they differ.
    """
    codes = (
        await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES)
        .using_db(conn)
        .prefetch_related("lock")
    )
    gates = _pins_of(ctx, [code for code in codes if code.lock.shared])
    clashing = [code for code in codes if not code.lock.shared and _pins_of(ctx, [code]) & gates]
    if not clashing:
        return Outcome()
    outcome = await revoke(ctx, conn, clashing, actor="system", reason="item PIN apart from gates")
    return outcome + await plan_codes(
        ctx,
        conn,
        [code.lock for code in clashing],
        AccessWindow(clashing[0].starts_at, clashing[0].ends_at),
        label=f"Keyturn {booking.reference}",
        booking=booking,
        one_pin=False,
        avoid=gates,
    )
