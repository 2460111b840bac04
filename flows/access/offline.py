"""Offline codes: the backup a lock that is offline at the deadline is given, and the whole hours
offline codes are computed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.context import AccessContext
from flows.access.kinds import LIVE_STATES, revoke_timer, set_effect
from flows.access.planning import revoke
from flows.access.policy import OFFLINE_HOURLY_MAX
from flows.effects import Alert, Audit, Outcome, Write
from locks import LockError
from locks.windows import AccessWindow, ceil_hour, floor_hour
from storage.kinds import AlertKind
from storage.models import AccessCode, AccessCodeState, Lock


async def reported_offline(ctx: AccessContext, lock: Lock) -> bool:
    """The provider says the lock is offline (not merely slow to confirm a new code)."""
    try:
        device = await ctx.provider(lock).get_device(lock.device_id)
    except LockError:
        return False  # the vendor's cloud itself is down: it cannot issue a code either
    return device.online is False


def offline_backup(ctx: AccessContext, code: AccessCode, lock: Lock, otherwise: Outcome) -> Write:
    """The lock is offline at the deadline, and it takes offline codes: the code waiting for
    it is withdrawn and an offline one, which the vendor computes without the lock, takes its
    place. The renter is sent that PIN; it cannot be removed before its end. ``otherwise``
    when no whole hour of the window can be given without reaching into another renter's time
    on this lock."""

    async def backup(conn: BaseDBAsyncClient) -> Outcome:
        # Read again under a row lock: a cancellation or an extension since the deadline
        # fired stands, and the backup takes the window the code has now.
        fresh = (
            await AccessCode.filter(
                id=code.id, state__in=(AccessCodeState.PENDING, AccessCodeState.PROGRAMMING)
            )
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if fresh is None:
            return Outcome()
        window = await offline_window(fresh, lock, conn)
        if window is None:
            return otherwise
        outcome = await revoke(
            ctx, conn, [fresh], actor="system", reason="lock unreachable: offline backup issued"
        )
        made = await AccessCode.create(
            booking_id=code.booking_id,
            staff_id=code.staff_id,
            lock=lock,
            label=code.label,
            pin_encrypted="",
            starts_at=window.starts_at,
            ends_at=window.ends_at,
            state=AccessCodeState.PENDING,
            offline=True,
            using_db=conn,
        )
        outcome.effects.append(set_effect(made.id))
        outcome.timers.append(revoke_timer(made.id, window.ends_at))
        outcome.alerts.append(
            Alert(
                AlertKind.CODE_NOT_SET,
                f"code-not-set:{lock.key}",
                "ops.offline_backup_issued",
                {"lock": lock.label, "starts": code.starts_at.isoformat()},
            )
        )
        outcome.audits.append(
            Audit(
                "system",
                "access.offline_backup",
                f"code:{made.id}",
                {"lock": lock.key, "replaces": code.id},
            )
        )
        return outcome

    return backup


async def offline_window(
    code: AccessCode, lock: Lock, conn: BaseDBAsyncClient | None
) -> AccessWindow | None:
    """The code's window in whole hours of the lock's time zone, as offline codes are
    computed: widened where that reaches no other booking's code on this lock (a shared
    gate admits many renters at once), else narrowed."""
    zone = ZoneInfo(lock.timezone)

    def utc_hour(instant: datetime, up: bool) -> datetime:
        return (ceil_hour if up else floor_hour)(instant, zone).astimezone(UTC)

    starts_at, ends_at = utc_hour(code.starts_at, False), utc_hour(code.ends_at, True)
    if not lock.shared:
        others = (
            AccessCode.filter(lock_id=lock.id, state__in=LIVE_STATES)
            .exclude(booking_id=code.booking_id)
            .using_db(conn)
        )
        if await others.filter(starts_at__lt=code.starts_at, ends_at__gt=starts_at).exists():
            starts_at = utc_hour(code.starts_at, True)
        if await others.filter(starts_at__lt=ends_at, ends_at__gt=code.ends_at).exists():
            ends_at = utc_hour(code.ends_at, False)
    if not timedelta(hours=1) <= ends_at - starts_at <= OFFLINE_HOURLY_MAX:
        return None  # no whole hour left, or longer than hourly offline codes last
    return AccessWindow(starts_at, ends_at)


async def whole_hours(code: AccessCode, lock: Lock) -> AccessWindow | None:
    """igloohome computes its codes for whole hours and would widen the window itself, into
    the next renter's time too: the window is set to whole hours here instead, widened only
    where no other booking's code on the lock is (its revocation moves with it). None when
    the window stays as it is."""
    window = await offline_window(code, lock, None)
    if window is None or (window.starts_at, window.ends_at) == (code.starts_at, code.ends_at):
        return None
    return window
