"""The access-code lifecycle: plan, program, confirm, move, revoke and reconcile.

A code is planned in the transaction that decides it (a confirmed booking, a staff code), with
timers that program it ahead of its window, check it is set by a deadline, and revoke it when the
window ends. Programming and removal are outbox effects, so a lock cloud that is down delays them
and they are retried; removal is critical and retried until the provider confirms or a person
decides. Every step is audited and nothing here logs a PIN.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from flows.bookings import stored_range
from flows.clock import Clock
from flows.code_presence import left_on_lock
from flows.effects import Alert, Audit, CancelTimer, Effect, Outcome, SetTimer
from flows.lead_times import LeadTimes
from flows.notify import Notifier
from flows.staging import stage_outcome
from flows.timers import TimerFired
from locks import (
    CapabilityMissing,
    CodeConstraints,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockError,
    LockProvider,
    LockRejected,
    LockUnavailable,
    ProgrammedCode,
    RejectionReason,
)
from locks.pins import generate_pin, pin_for_locks
from locks.port import capabilities_from_json, constraints_from_json
from locks.windows import AccessWindow, ceil_hour, floor_hour
from storage.journal import resolve_alert
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AssetLock,
    AuditEvent,
    Booking,
    BookingState,
    Location,
    Lock,
    OutboxEffect,
    StaffMember,
    Timer,
    TimerState,
)
from storage.removals import (
    REMOVAL_CHECK_TIMER,
    REMOVE_EFFECT,
    pending_removals,
    removal_check_key,
    stranded_removals,
)
from storage.sealing import Sealer
from storage.timers import postpone_timer

log = logging.getLogger(__name__)

LIVE_STATES = (AccessCodeState.PENDING, AccessCodeState.PROGRAMMING, AccessCodeState.SET)
PROGRAM_TIMER = "access.program"
DEADLINE_TIMER = "access.deadline"
CONFIRM_TIMER = "access.confirm"
#: Fired at once when a booking's code becomes set: the journey sends a PIN that is due.
CODE_SET_TIMER = "access.code_set"
#: Fired when a booking's code is proved off its lock: a renter whose booking was cancelled is
#: told, once every code of it is off, that their code no longer works.
CODE_REMOVED_TIMER = "access.code_removed"
#: The audit that records that the renter was told so (once per booking).
CODE_OFF_TOLD = "access.renter_told_code_off"
#: Why an offline code is marked removed though it still works until its end.
LAPSES = "cannot be revoked remotely; lapses by itself"
#: Fired when a lock refuses to move a booking's code to its new window.
CODE_NOT_MOVED_TIMER = "access.code_not_moved"
REVOKE_TIMER = "access.revoke"
RECONCILE_TIMER = "access.reconcile"
RECONCILE_KEY = "access:reconcile"
#: Offline codes bound by the hour last at most this long (igloohome's algoPINs, through Seam).
OFFLINE_HOURLY_MAX = timedelta(hours=672)
SET_EFFECT = "access.set"
#: Why a code on a lock with PIN rules Keyturn does not know was refused.
PIN_RULES_UNKNOWN = "unknown PIN rules: Keyturn may not choose a PIN for this lock"
UPDATE_EFFECT = "access.update"


@dataclass(frozen=True)
class AccessPolicy:
    #: When codes are programmed and must be set, where a lock's location does not say.
    lead_times: LeadTimes = field(default_factory=LeadTimes)
    #: ...but a code is never overdue sooner than this after its first programming attempt.
    not_set_after: timedelta = timedelta(minutes=10)
    #: Every lock's codes are compared with Keyturn's this often.
    reconcile_every: timedelta = timedelta(hours=6)
    #: A deletion the provider accepted is looked up this long after, then twice as long
    #: after each look that finds it still on its way, up to ``removal_check_max``.
    removal_check_every: timedelta = timedelta(minutes=5)
    removal_check_max: timedelta = timedelta(hours=1)
    #: A code the lock has not confirmed is looked up again after this long, by how far its
    #: window is: (further than, wait). Webhooks only make it sooner.
    confirm_polls: tuple[tuple[timedelta, timedelta], ...] = (
        (timedelta(hours=6), timedelta(minutes=15)),
        (timedelta(hours=2), timedelta(minutes=5)),
        (timedelta(minutes=30), timedelta(minutes=1)),
    )
    confirm_poll_close: timedelta = timedelta(seconds=20)

    def confirm_poll_after(self, starts_in: timedelta) -> timedelta:
        """How long until a code still ``setting`` on the lock is looked up again."""
        for further_than, wait in self.confirm_polls:
            if starts_in > further_than:
                return wait
        return self.confirm_poll_close


class AccessPlanError(Exception):
    """A code cannot be planned (no lock to program, no PIN the locks accept)."""


@dataclass
class ReconcileReport:
    lock_key: str
    strays_removed: list[str] = field(default_factory=list)
    reprogrammed: list[int] = field(default_factory=list)
    drift: list[int] = field(default_factory=list)
    #: Codes marked removing whose removal was lost: queued again.
    removals_requeued: list[int] = field(default_factory=list)
    #: Codes no booking holds that the lock kept after their deletion.
    strays_stuck: list[str] = field(default_factory=list)
    #: Codes marked removing that the lock's list no longer shows: removed.
    removals_confirmed: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.strays_removed
            or self.reprogrammed
            or self.drift
            or self.removals_requeued
            or self.strays_stuck
            or self.removals_confirmed
        )


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
    return sorted({lock.id: lock for lock in [*own, *gates]}.values(), key=lambda lk: lk.key)


class AccessCodes:
    """Plans codes inside the caller's transaction and carries them through their lifecycle."""

    def __init__(
        self,
        providers: Mapping[str, LockProvider],
        sealer: Sealer,
        clock: Clock,
        policy: AccessPolicy | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.providers = providers
        self.sealer = sealer
        self.clock = clock
        self.policy = policy or AccessPolicy()
        #: Tells a renter whose cancelled booking's codes are off that they no longer work.
        self.notifier = notifier

    def lead_times_at(self, location: Location) -> LeadTimes:
        """How long before a rental at ``location`` its codes are programmed and set, and its
        PIN sent."""
        return self.policy.lead_times.at(location)

    # -- planning (inside the caller's transaction) -------------------------------------------

    async def plan_booking_codes(self, conn: BaseDBAsyncClient, booking: Booking) -> Outcome:
        locks = await locks_for_booking(booking, conn)
        if not locks:
            return Outcome(
                alerts=[
                    Alert(
                        "asset_without_lock",
                        f"asset-without-lock:{booking.asset_id}",
                        "ops.asset_without_lock",
                        {"booking": booking.reference},
                    )
                ]
            )
        window = stored_range(booking)
        return await self._plan(
            conn, locks, window, label=f"Keyturn {booking.reference}", booking=booking
        )

    async def plan_staff_code(
        self,
        conn: BaseDBAsyncClient,
        staff: StaffMember,
        lock: Lock,
        window: AccessWindow,
        label: str,
    ) -> Outcome:
        lock_location = (
            await Lock.filter(id=lock.id).using_db(conn).get().prefetch_related("location")
        )
        scope = list(staff.location_scope)
        if scope and lock_location.location.slug not in scope:
            raise AccessPlanError(
                f"{staff.name} may not open locks at {lock_location.location.name}"
            )
        outcome = await self._plan(conn, [lock], window, label=label or staff.name, staff=staff)
        outcome.audits.append(
            Audit(
                f"staff:{staff.telegram_user_id}",
                "access.staff_code",
                f"lock:{lock.key}",
                {"until": window.ends_at.isoformat(), "label": label},
            )
        )
        return outcome

    async def _plan(
        self,
        conn: BaseDBAsyncClient,
        locks: list[Lock],
        window: AccessWindow,
        *,
        label: str,
        booking: Booking | None = None,
        staff: StaffMember | None = None,
        deadline: bool = True,
    ) -> Outcome:
        """Codes for ``locks`` over ``window``, with their timers. ``deadline``: check by the
        confirm deadline that they are set (no check for the code that follows a refused
        offline backup, so the deadline does not ask for another)."""
        now = self.clock.now()
        leads = {
            location.id: self.lead_times_at(location)
            for location in await Location.filter(
                id__in={lock.location_id for lock in locks}
            ).using_db(conn)
        }
        chosen: dict[str, str] = {}
        pinned = [
            lock for lock in locks if not _computes_own_pin(lock) and not _lock_sets_pin(lock)
        ]
        # A lock whose PIN rules Keyturn does not know (and that cannot choose a PIN itself, as
        # Seam does) gets no PIN guessed: its code is refused at once and ops hear of it.
        unknown = {lock.key for lock in pinned if not _may_choose_pin(lock)}
        pinned = [lock for lock in pinned if lock.key not in unknown]
        if pinned:
            per_lock = {
                lock.key: (
                    constraints_from_json(lock.code_constraints),
                    await self._taken(conn, lock, window),
                )
                for lock in pinned
            }
            chosen = pin_for_locks(per_lock)
        outcome = Outcome()
        for lock in locks:
            pin = chosen.get(lock.key)
            refused = lock.key in unknown
            code = await AccessCode.create(
                booking=booking,
                staff=staff,
                lock=lock,
                label=label[:100],
                pin_encrypted=self.sealer.seal(pin) if pin else "",
                starts_at=window.starts_at,
                ends_at=window.ends_at,
                state=AccessCodeState.FAILED if refused else AccessCodeState.PENDING,
                offline=pin is None and not _lock_sets_pin(lock) and not refused,
                last_error=PIN_RULES_UNKNOWN if refused else "",
                using_db=conn,
            )
            if refused:
                outcome.alerts.append(
                    pin_rules_alert(lock, constraints_from_json(lock.code_constraints))
                )
            lead = leads[lock.location_id]
            program_at = max(now, window.starts_at - lead.code_lead)
            confirm_by = max(
                window.starts_at - lead.confirm_before,
                program_at + self.policy.not_set_after,
            )
            outcome.timers += [
                SetTimer(PROGRAM_TIMER, program_at, f"access:program:{code.id}", {"code": code.id}),
                SetTimer(
                    REVOKE_TIMER, window.ends_at, f"access:revoke:{code.id}", {"code": code.id}
                ),
            ]
            if deadline:
                outcome.timers.append(
                    SetTimer(DEADLINE_TIMER, confirm_by, deadline_key(code.id), {"code": code.id})
                )
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

    async def _taken(
        self, conn: BaseDBAsyncClient | None, lock: Lock, window: AccessWindow
    ) -> set[str]:
        """PINs of other live codes on this lock whose windows overlap ``window``."""
        rows = await AccessCode.filter(
            lock_id=lock.id,
            state__in=LIVE_STATES,
            starts_at__lt=window.ends_at,
            ends_at__gt=window.starts_at,
        ).using_db(conn)
        return {self.sealer.open(row.pin_encrypted) for row in rows if row.pin_encrypted}

    # -- moving and revoking (inside the caller's transaction) --------------------------------

    async def revoke(
        self, conn: BaseDBAsyncClient, codes: list[AccessCode], *, actor: str, reason: str
    ) -> Outcome:
        outcome = Outcome()
        removing = [code.id for code in codes if code.state == AccessCodeState.REMOVING]
        pending = await pending_removals(conn, removing) if removing else set()
        for code in codes:
            if code.state == AccessCodeState.REMOVING and code.id not in pending:
                # Marked removing, but its removal was lost: asked for again, it is queued.
                outcome.effects.append(_remove_again(code.id, "revoke", self.clock.now()))
            if code.state in (AccessCodeState.REMOVED, AccessCodeState.REMOVING):
                continue
            await (
                AccessCode.filter(id=code.id).using_db(conn).update(state=AccessCodeState.REMOVING)
            )
            outcome.timers += [
                CancelTimer(f"access:program:{code.id}"),
                CancelTimer(deadline_key(code.id)),
                CancelTimer(confirm_key(code.id)),
                CancelTimer(f"access:revoke:{code.id}"),
            ]
            outcome.effects.append(_remove_effect(code.id))
            outcome.audits.append(
                Audit(actor, "access.revoked", f"code:{code.id}", {"reason": reason})
            )
        return outcome

    async def move_window(
        self, conn: BaseDBAsyncClient, booking: Booking, window: AccessWindow
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
        not_on_lock = (AccessCodeState.PENDING, AccessCodeState.FAILED)  # moved here only
        for code in codes:
            lock = code.lock
            # An offline code is computed from its window: it cannot be moved, only replaced.
            can_update = (
                not code.offline
                and LockCapability.UPDATE_WINDOW
                in capabilities_from_json(lock.capabilities, lock.provider)
            )
            if not code.offline and (can_update or code.state in not_on_lock):
                await (
                    AccessCode.filter(id=code.id)
                    .using_db(conn)
                    .update(starts_at=window.starts_at, ends_at=window.ends_at)
                )
                outcome.timers.append(
                    SetTimer(
                        REVOKE_TIMER, window.ends_at, f"access:revoke:{code.id}", {"code": code.id}
                    )
                )
                if code.state not in not_on_lock:
                    outcome.effects.append(
                        Effect(
                            UPDATE_EFFECT,
                            f"access:update:{code.id}:{window.ends_at.isoformat()}",
                            {"code": code.id},
                        )
                    )
            else:
                replaced.append(lock)
                outcome = outcome + (
                    await self.revoke(conn, [code], actor="system", reason="window moved")
                )
        # A lock left without a live code (its code's window ended and it was revoked just as
        # the window moved) gets a new one for the new window.
        covered = {code.lock_id for code in codes}
        replaced += [
            lock for lock in await locks_for_booking(booking, conn) if lock.id not in covered
        ]
        if replaced:
            outcome = outcome + (
                await self._plan(
                    conn, replaced, window, label=f"Keyturn {booking.reference}", booking=booking
                )
            )
        return outcome, [lock.label for lock in replaced]

    # -- timers -------------------------------------------------------------------------------

    async def on_program_due(self, event: TimerFired) -> Outcome:
        code_id = int(event.payload["code"])
        code = await AccessCode.get_or_none(id=code_id)
        if code is None or code.state != AccessCodeState.PENDING:
            return Outcome()
        return Outcome(effects=[Effect(SET_EFFECT, f"access:set:{code_id}", {"code": code_id})])

    async def on_revoke_due(self, event: TimerFired) -> Outcome:
        code_id = int(event.payload["code"])
        now = self.clock.now()

        async def window_ended(conn: BaseDBAsyncClient) -> Outcome:
            # Marked removing in the transaction that queues its removal and finishes this
            # timer: a commit that fails (a crash, a claim taken over) leaves the code as it
            # was, and the timer fires again. Only a code whose window has ended: one moved
            # later meanwhile (an extension) keeps working until its own timer at its new end.
            revoking = (
                await AccessCode.filter(id=code_id, ends_at__lte=now)
                .exclude(state__in=(AccessCodeState.REMOVED, AccessCodeState.REMOVING))
                .using_db(conn)
                .update(state=AccessCodeState.REMOVING)
            )
            if not revoking:
                return Outcome()
            return Outcome(
                timers=[
                    CancelTimer(f"access:program:{code_id}"),
                    CancelTimer(deadline_key(code_id)),
                    CancelTimer(confirm_key(code_id)),
                ],
                effects=[_remove_effect(code_id)],
                audits=[Audit("system", "access.window_ended", f"code:{code_id}")],
            )

        return Outcome(writes=[window_ended])

    async def on_confirm_due(self, event: TimerFired) -> Outcome:
        """Ask the lock whether a code still programming is set; look again later, sooner as
        its window comes, until it is set, refused or gone."""
        code_id = int(event.payload["code"])
        code = await AccessCode.get_or_none(id=code_id).select_related("lock")
        now = self.clock.now()
        if code is None or code.state != AccessCodeState.PROGRAMMING or code.ends_at <= now:
            return Outcome()
        if await self.confirm(code):
            return became_set(code, now)
        return Outcome(timers=[await self._confirm_poll(code, now)])

    async def _confirm_poll(self, code: AccessCode, now: datetime) -> SetTimer:
        """The next look-up, sooner as the code is needed: by its window's start, or for a
        booking's code by when its PIN is due to the renter (the PIN lead before the window,
        as the journey sends it), whichever comes first."""
        needed_at = code.starts_at
        if code.booking_id is not None:
            location = await Location.get(id=code.lock.location_id)
            needed_at = min(needed_at, code.starts_at - self.lead_times_at(location).pin_lead)
        wait = self.policy.confirm_poll_after(needed_at - now)
        return SetTimer(CONFIRM_TIMER, now + wait, confirm_key(code.id), {"code": code.id})

    async def on_deadline(self, event: TimerFired) -> Outcome:
        """The window opens soon: a code that is not confirmed set is an alert, and a backup."""
        code_id = int(event.payload["code"])
        code = await AccessCode.get_or_none(id=code_id).select_related("lock")
        if code is None or code.state not in (
            AccessCodeState.PENDING,
            AccessCodeState.PROGRAMMING,
            AccessCodeState.FAILED,
        ):
            return Outcome()
        if code.state == AccessCodeState.PROGRAMMING and code.provider_ref:
            confirmed = await self.confirm(code)
            if confirmed:
                return became_set(code, self.clock.now())
        lock = code.lock
        if (
            code.state != AccessCodeState.FAILED
            and _takes_offline_backup(lock, code)
            and await self._reported_offline(lock)
        ):
            backup = await self._offline_backup(code, lock)
            if backup is not None:
                return backup
        outcome = Outcome(
            alerts=[
                Alert(
                    "code_not_set",
                    f"code-not-set:{lock.key}",
                    "ops.code_not_set",
                    {"lock": lock.label, "starts": code.starts_at.isoformat(), "state": code.state},
                )
            ]
        )
        if code.state == AccessCodeState.FAILED:
            # A fresh PIN where the lock refused this one; programmed at once.
            outcome.effects.append(
                Effect(SET_EFFECT, f"access:set:{code_id}:backup", {"code": code_id, "fresh": True})
            )
        elif code.state == AccessCodeState.PENDING:
            outcome.effects.append(Effect(SET_EFFECT, f"access:set:{code_id}", {"code": code_id}))
        return outcome

    async def _reported_offline(self, lock: Lock) -> bool:
        """The provider says the lock is offline (not merely slow to confirm a new code)."""
        try:
            device = await self._provider(lock).get_device(lock.device_id)
        except LockError:
            return False  # the vendor's cloud itself is down: it cannot issue a code either
        return device.online is False

    async def _offline_backup(self, code: AccessCode, lock: Lock) -> Outcome | None:
        """The lock is offline at the deadline, and it takes offline codes: the code waiting
        for it is withdrawn and an offline one, which the vendor computes without the lock,
        takes its place. The renter is sent that PIN; it cannot be removed before its end.
        None when no whole hour of the window can be given without reaching into another
        renter's time on this lock."""
        now = self.clock.now()
        async with in_transaction() as conn:
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
            window = await self._offline_window(fresh, lock, conn)
            if window is None:
                return None
            outcome = await self.revoke(
                conn, [fresh], actor="system", reason="lock unreachable: offline backup issued"
            )
            backup = await AccessCode.create(
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
            outcome.effects.append(
                Effect(SET_EFFECT, f"access:set:{backup.id}", {"code": backup.id})
            )
            outcome.timers.append(
                SetTimer(
                    REVOKE_TIMER,
                    window.ends_at,
                    f"access:revoke:{backup.id}",
                    {"code": backup.id},
                )
            )
            outcome.alerts.append(
                Alert(
                    "code_not_set",
                    f"code-not-set:{lock.key}",
                    "ops.offline_backup_issued",
                    {"lock": lock.label, "starts": code.starts_at.isoformat()},
                )
            )
            outcome.audits.append(
                Audit(
                    "system",
                    "access.offline_backup",
                    f"code:{backup.id}",
                    {"lock": lock.key, "replaces": code.id},
                )
            )
            await stage_outcome(conn, outcome, now)
        return Outcome()

    async def _whole_hours(self, code: AccessCode, lock: Lock) -> None:
        """igloohome computes its codes for whole hours and would widen the window itself, into
        the next renter's time too: the window is set to whole hours here instead, widened only
        where no other booking's code on the lock is, and its revocation moves with it."""
        async with in_transaction() as conn:
            window = await self._offline_window(code, lock, conn)
            if window is None or (window.starts_at, window.ends_at) == (
                code.starts_at,
                code.ends_at,
            ):
                return
            await (
                AccessCode.filter(id=code.id)
                .using_db(conn)
                .update(starts_at=window.starts_at, ends_at=window.ends_at)
            )
            code.starts_at, code.ends_at = window.starts_at, window.ends_at
            revoke = SetTimer(
                REVOKE_TIMER, window.ends_at, f"access:revoke:{code.id}", {"code": code.id}
            )
            await stage_outcome(conn, Outcome(timers=[revoke]), self.clock.now())

    async def _offline_window(
        self, code: AccessCode, lock: Lock, conn: BaseDBAsyncClient
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

    async def confirm(self, code: AccessCode) -> bool:
        """Ask the provider whether a code still programming is set now (with its PIN, for a
        code the vendor computes); True when it is."""
        provider = self.providers.get(code.lock.provider)
        if provider is None or code.provider_ref is None:
            return False
        try:
            found = await provider.get_code(code.lock.device_id, code.provider_ref)
        except LockError:
            return False
        if found is None or found.status != CodeStatus.SET:
            return False
        update: dict[str, object] = {"state": AccessCodeState.SET}
        if found.offline or not code.pin_encrypted:  # a computed PIN is the vendor's
            if not found.pin:
                return False
            update["pin_encrypted"] = self.sealer.seal(found.pin)
        await AccessCode.filter(id=code.id, state=AccessCodeState.PROGRAMMING).update(**update)
        return True

    # -- effects (run by the outbox dispatcher, at least once) --------------------------------

    async def execute_set(self, effect: OutboxEffect) -> None:
        code_id = int(str(effect.payload["code"]))
        code = await AccessCode.get(id=code_id).select_related("lock")
        if effect.payload.get("fresh") and code.state == AccessCodeState.FAILED:
            await self._fresh_pin(code)
        if code.state not in (AccessCodeState.PENDING, AccessCodeState.PROGRAMMING):
            return  # already set, or revoked meanwhile
        lock = code.lock
        provider = self._provider(lock)
        if code.offline and code.provider_ref and not _computes_own_pin(lock):
            # Made already: it can only be waited for, never remade.
            if await self.confirm(code):
                now = self.clock.now()
                async with in_transaction() as conn:
                    await stage_outcome(conn, became_set(code, now), now)
            return
        retried = code.state == AccessCodeState.PROGRAMMING
        # Only from a state that wants the code: a revocation since the read above stands.
        programming = await AccessCode.filter(
            id=code.id, state__in=(AccessCodeState.PENDING, AccessCodeState.PROGRAMMING)
        ).update(state=AccessCodeState.PROGRAMMING)
        if not programming:
            return
        if not retried:
            # Counted from this first attempt: a code made at the last minute has
            # ``not_set_after`` to be set before ops hear of it.
            now = self.clock.now()
            location = await Location.get(id=lock.location_id)
            confirm_before = self.lead_times_at(location).confirm_before
            due = max(code.starts_at - confirm_before, now + self.policy.not_set_after)
            await postpone_timer(None, deadline_key(code.id), due)
        if _computes_own_pin(lock) and not retried:
            await self._whole_hours(code, lock)
        request = self._request(code, lock)
        if request.pin is not None and not request.offline:
            request = replace(request, common_key=await self._common_key(code, lock))
        if retried and request.offline:
            # An offline code has no PIN to look for: an earlier attempt that created it without
            # recording it (its worker died) is found by its name and window, not created twice.
            # A lock that cannot be listed now fails this attempt; it is retried.
            existing = await provider.list_codes(lock.device_id)
            earlier = next((c for c in existing if _same_code(c, request)), None)
            if earlier is not None:
                await self._store_programmed(code, earlier)
                return
        try:
            programmed = await provider.create_code(request)
        except LockRejected as err:
            if err.reason == RejectionReason.DUPLICATE_CODE:
                adopted = await self._adopt(provider, lock, request)
                if adopted is not None:
                    await self._store_programmed(code, adopted)
                    return
            await self._fail(code, lock, err)
            return
        await self._store_programmed(code, programmed)

    async def _store_programmed(self, code: AccessCode, programmed: ProgrammedCode) -> None:
        state = (
            AccessCodeState.SET
            if programmed.status == CodeStatus.SET
            else AccessCodeState.PROGRAMMING
        )
        update: dict[str, object] = {
            "state": state,
            "provider_ref": programmed.provider_ref,
            "offline": programmed.offline,
            "last_error": "",
        }
        if programmed.pin and (programmed.offline or not code.pin_encrypted):
            update["pin_encrypted"] = self.sealer.seal(programmed.pin)  # the vendor's own PIN
        now = self.clock.now()
        poll = await self._confirm_poll(code, now)
        async with in_transaction() as conn:
            stored = (
                await AccessCode.filter(id=code.id, state=AccessCodeState.PROGRAMMING)
                .using_db(conn)
                .update(**update)
            )
            if stored:
                followups = (
                    became_set(code, now)
                    if state == AccessCodeState.SET
                    else Outcome(timers=[poll])
                )
                await stage_outcome(conn, followups, now)
        if stored == 0 and programmed.offline:
            # Revoked while the vendor computed it: it cannot be taken off, so ops hear of it.
            await AccessCode.filter(id=code.id).update(provider_ref=programmed.provider_ref)
            await self._cannot_revoke(code, code.lock, self.clock.now())
            return
        if stored == 0:
            # Revoked while the lock was being programmed: take the new code off again at once.
            await self._provider(code.lock).delete_code(
                code.lock.device_id, programmed.provider_ref
            )
            await AccessCode.filter(id=code.id).update(provider_ref=programmed.provider_ref)
            return
        log.info("access code %s is %s on %s", code.id, state, code.lock.key)

    async def _adopt(
        self, provider: LockProvider, lock: Lock, request: CodeRequest
    ) -> ProgrammedCode | None:
        """A retried create whose first try reached the lock: take the code already there."""
        try:
            existing = await provider.list_codes(lock.device_id)
        except LockError:
            return None
        return next((c for c in existing if _same_code(c, request)), None)

    async def _unrecorded(self, code: AccessCode, lock: Lock) -> ProgrammedCode | None:
        """The code on the lock that a set attempt created without recording it (its worker
        died between the lock's answer and the database), or None.

        The lock is asked only once the code's programming time has come: no set is attempted
        before it, so a code revoked days ahead never reached the lock."""
        request = self._request(code, lock)
        if not code.pin_encrypted and not request.offline:
            return None
        location = await Location.get(id=lock.location_id)
        if self.clock.now() < code.starts_at - self.lead_times_at(location).code_lead:
            return None
        existing = await self._provider(lock).list_codes(lock.device_id)
        return next((c for c in existing if _same_code(c, request)), None)

    async def _common_key(self, code: AccessCode, lock: Lock) -> str | None:
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
        pin = self.sealer.open(code.pin_encrypted)
        if len(siblings) < 2 or any(
            sibling.lock.provider != "seam"
            or not sibling.pin_encrypted
            or self.sealer.open(sibling.pin_encrypted) != pin
            for sibling in siblings
        ):
            return None
        starts, ends = (moment.astimezone(UTC) for moment in (code.starts_at, code.ends_at))
        return f"keyturn-booking-{code.booking_id}-{starts:%Y%m%dT%H%M}-{ends:%Y%m%dT%H%M}"

    def _request(self, code: AccessCode, lock: Lock) -> CodeRequest:
        """What the lock is asked to hold for ``code``."""
        return CodeRequest(
            device_id=lock.device_id,
            pin=self.sealer.open(code.pin_encrypted) if code.pin_encrypted else None,
            starts_at=code.starts_at,
            ends_at=code.ends_at,
            name=f"{code.label} #{code.id}",
            timezone=lock.timezone,
            offline=code.offline and not _computes_own_pin(lock),
        )

    async def _fresh_pin(self, code: AccessCode) -> None:
        lock = code.lock
        if code.offline:  # the vendor computes it: asked again as it is
            await AccessCode.filter(id=code.id, state=AccessCodeState.FAILED).update(
                state=AccessCodeState.PENDING, last_error=""
            )
            code.state = AccessCodeState.PENDING
            return
        if _lock_sets_pin(lock):  # the lock chooses again when asked without a PIN
            await AccessCode.filter(id=code.id, state=AccessCodeState.FAILED).update(
                pin_encrypted="", state=AccessCodeState.PENDING, last_error=""
            )
            code.state, code.pin_encrypted = AccessCodeState.PENDING, ""
            return
        constraints = constraints_from_json(lock.code_constraints)
        if not constraints.keyturn_may_choose:
            return  # stays refused: ops were told when it was planned, and are told again
        window = AccessWindow(code.starts_at, code.ends_at)
        taken = await self._taken(None, lock, window)
        if code.pin_encrypted:
            taken.add(self.sealer.open(code.pin_encrypted))
        pin = generate_pin(constraints, taken=taken)
        sealed = self.sealer.seal(pin)
        # Only a code still refused: a revocation since stands, and nothing is programmed.
        fresh = await AccessCode.filter(id=code.id, state=AccessCodeState.FAILED).update(
            pin_encrypted=sealed, state=AccessCodeState.PENDING, last_error=""
        )
        if fresh:
            code.state = AccessCodeState.PENDING
            code.pin_encrypted = sealed

    async def _fail(self, code: AccessCode, lock: Lock, err: LockRejected) -> None:
        now = self.clock.now()
        failed = await AccessCode.filter(id=code.id, state=AccessCodeState.PROGRAMMING).update(
            state=AccessCodeState.FAILED, last_error=f"{err.reason}: {err}"[:500]
        )
        if not failed:
            return  # revoked while the lock answered: nothing to retry, nobody to tell
        outcome = Outcome(
            alerts=[rejected_alert(lock, str(err.reason))],
            audits=[
                Audit("system", "access.failed", f"code:{code.id}", {"reason": str(err.reason)})
            ],
        )
        if err.reason == RejectionReason.DUPLICATE_CODE:
            outcome.effects.append(
                Effect(SET_EFFECT, f"access:set:{code.id}:fresh", {"code": code.id, "fresh": True})
            )
        async with in_transaction() as conn:
            if code.offline and code.booking_id and not _computes_own_pin(lock):
                # A refused offline backup: the renter gets an ordinary code again, set when
                # the lock is back, rather than nothing.
                await (
                    AccessCode.filter(id=code.id, state=AccessCodeState.FAILED)
                    .using_db(conn)
                    .update(state=AccessCodeState.REMOVED)
                )
                booking = await Booking.filter(id=code.booking_id).using_db(conn).get()
                window = AccessWindow(code.starts_at, code.ends_at)
                outcome = outcome + await self._plan(
                    conn, [lock], window, label=code.label, booking=booking, deadline=False
                )
            await stage_outcome(conn, outcome, now)

    async def execute_remove(self, effect: OutboxEffect) -> None:
        code_id = int(str(effect.payload["code"]))
        code = await AccessCode.get(id=code_id).select_related("lock")
        if code.state == AccessCodeState.REMOVED:
            return
        lock = code.lock
        now = self.clock.now()
        if code.provider_ref is None:
            unrecorded = await self._unrecorded(code, lock)
            if unrecorded is not None and unrecorded.offline:
                await AccessCode.filter(id=code.id).update(provider_ref=unrecorded.provider_ref)
                await self._cannot_revoke(code, lock, now)
                return
            if unrecorded is not None:
                await self._provider(lock).delete_code(lock.device_id, unrecorded.provider_ref)
            await AccessCode.filter(id=code.id, provider_ref__isnull=True).update(
                state=AccessCodeState.REMOVED
            )
            return
        if code.offline and not _computes_own_pin(lock):
            # An offline backup (issued while the lock was unreachable) cannot be removed
            # through the vendor's API; it lapses at its end.
            await self._cannot_revoke(code, lock, now)
            return
        provider = self._provider(lock)
        try:
            await provider.delete_code(lock.device_id, code.provider_ref)
        except CapabilityMissing:
            await self._cannot_revoke(code, lock, now)
            return
        if await self._still_held(provider, lock, code.provider_ref) is not None:
            # Accepted but not yet off the lock (Seam deletes on the device later): the code
            # stays removing until the provider confirms it, by its webhook or when asked.
            async with in_transaction() as conn:
                await stage_outcome(conn, Outcome(timers=[self._removal_check(code.id)]), now)
            return
        await AccessCode.filter(id=code.id).update(state=AccessCodeState.REMOVED, last_error="")
        async with in_transaction() as conn:
            await stage_outcome(conn, removal_confirmed(code, lock, now), now)

    async def _still_held(
        self, provider: LockProvider, lock: Lock, provider_ref: str
    ) -> CodeStatus | None:
        """How the lock still holds a code after its deletion, or None once that is proved."""
        return await left_on_lock(provider, lock.device_id, provider_ref)

    def _removal_check(self, code_id: int, waited: timedelta | None = None) -> SetTimer:
        """The next look at a deletion on its way to the lock (one that waits long, on a lock
        that is offline, is looked at less often)."""
        wait = self.policy.removal_check_every
        if waited is not None:
            wait = min(max(waited * 2, wait), self.policy.removal_check_max)
        return SetTimer(
            REMOVAL_CHECK_TIMER,
            self.clock.now() + wait,
            removal_check_key(code_id),
            {"code": code_id, "wait": int(wait.total_seconds())},
        )

    async def on_removal_check(self, event: TimerFired) -> Outcome:
        """Has the provider taken the code off its lock? Until it says so the code stays
        removing and is asked after again; a deletion the lock did not take is sent again."""
        code_id = int(event.payload["code"])
        code = await AccessCode.get_or_none(id=code_id).select_related("lock")
        if code is None or code.state != AccessCodeState.REMOVING or code.provider_ref is None:
            return Outcome()
        lock = code.lock
        waited = timedelta(seconds=int(event.payload.get("wait", 0)))
        provider = self.providers.get(lock.provider)
        if provider is None:
            return Outcome(timers=[self._removal_check(code_id, waited)])
        held = await self._still_held(provider, lock, code.provider_ref)
        if held == CodeStatus.REMOVING:
            return Outcome(timers=[self._removal_check(code_id, waited)])
        now = self.clock.now()
        if held is not None:  # still set: the deletion was lost on the way to the lock
            return Outcome(effects=[_remove_again(code_id, "check", now)])

        async def confirmed(conn: BaseDBAsyncClient) -> Outcome:
            removed = (
                await AccessCode.filter(id=code_id, state=AccessCodeState.REMOVING)
                .using_db(conn)
                .update(state=AccessCodeState.REMOVED, last_error="")
            )
            return removal_confirmed(code, lock, now) if removed else Outcome()

        return Outcome(writes=[confirmed])

    async def _cannot_revoke(self, code: AccessCode, lock: Lock, now: datetime) -> None:
        """Offline codes cannot be taken off the lock: they lapse at their own end."""
        outcome = Outcome(audits=[Audit("system", "access.lapses", f"code:{code.id}")])
        if code.ends_at > now:
            outcome.alerts.append(
                Alert(
                    "code_cannot_be_revoked",
                    f"code-cannot-be-revoked:{code.id}",
                    "ops.code_cannot_be_revoked",
                    {"lock": lock.label, "until": code.ends_at.isoformat()},
                )
            )
        await AccessCode.filter(id=code.id).update(state=AccessCodeState.REMOVED, last_error=LAPSES)
        async with in_transaction() as conn:
            await stage_outcome(conn, outcome, now)

    async def execute_update(self, effect: OutboxEffect) -> None:
        code_id = int(str(effect.payload["code"]))
        code = await AccessCode.get(id=code_id).select_related("lock")
        if (
            code.state not in (AccessCodeState.SET, AccessCodeState.PROGRAMMING)
            or not code.provider_ref
            or code.offline  # computed from its window: replaced, never moved
        ):
            return
        lock = code.lock
        try:
            moved = await self._provider(lock).update_code_window(
                lock.device_id, code.provider_ref, code.starts_at, code.ends_at
            )
        except LockRejected as err:
            await self._not_moved(code, lock, err)
            return
        now = self.clock.now()
        # What the lock holds now: set with the new window, or setting it again (looked up).
        if moved.status == CodeStatus.SET:
            followups = became_set(code, now)
        else:
            await AccessCode.filter(id=code.id, state=AccessCodeState.SET).update(
                state=AccessCodeState.PROGRAMMING
            )
            followups = Outcome(timers=[await self._confirm_poll(code, now)])
        async with in_transaction() as conn:
            await stage_outcome(conn, followups, now)

    async def _not_moved(self, code: AccessCode, lock: Lock, err: LockRejected) -> None:
        """The lock refused the new window: ops hear of it, and so does the renter's journey."""
        now = self.clock.now()
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
        async with in_transaction() as conn:
            await stage_outcome(conn, outcome, now)

    def _provider(self, lock: Lock) -> LockProvider:
        provider = self.providers.get(lock.provider)
        if provider is None:
            raise LockUnavailable(f"the {lock.provider} provider is not configured")
        return provider

    # -- reconciliation -----------------------------------------------------------------------

    async def reconcile(self, lock: Lock) -> ReconcileReport:
        """Compare what the lock holds with what Keyturn expects, and put it right."""
        report = ReconcileReport(lock.key)
        provider = self._provider(lock)
        now = self.clock.now()
        # A code marked removing whose removal was lost gets it queued again, whether or not
        # the lock answers now: removals are retried until the lock takes them.
        outcome = Outcome()
        for stranded in await stranded_removals(None, lock.id):
            outcome.effects.append(_remove_again(stranded.id, "reconcile", now))
            report.removals_requeued.append(stranded.id)
        try:
            listed = await provider.list_codes(lock.device_id)
        except LockError:
            async with in_transaction() as conn:
                await stage_outcome(conn, outcome, now)
            raise
        on_lock = {code.provider_ref: code for code in listed}
        expected = await AccessCode.filter(lock_id=lock.id, state__in=LIVE_STATES)
        known_refs = {code.provider_ref for code in expected if code.provider_ref}
        removing = {
            code.provider_ref
            for code in await AccessCode.filter(lock_id=lock.id, state=AccessCodeState.REMOVING)
        }
        for ref, held in on_lock.items():
            leaving = held.status in (CodeStatus.REMOVING, CodeStatus.REMOVED)
            # Offline codes cannot be removed; they lapse at their own end.
            if ref not in known_refs and ref not in removing and not leaving and not held.offline:
                await provider.delete_code(lock.device_id, ref)
                if await left_on_lock(provider, lock.device_id, ref) in (None, CodeStatus.REMOVING):
                    report.strays_removed.append(ref)  # gone, or on its way off the lock
                else:
                    report.strays_stuck.append(ref)  # the lock kept it: tried again next time
        for code in expected:
            if code.ends_at <= now or code.offline or not code.provider_ref:
                continue  # over, lapsing by itself, or not on the lock yet (pending, creating)
            found = on_lock.get(code.provider_ref)
            if found is None:
                # Set or being set, yet not on the lock: it is programmed afresh.
                reset = await AccessCode.filter(
                    id=code.id, state=code.state, provider_ref=code.provider_ref
                ).update(state=AccessCodeState.PENDING, provider_ref=None)
                if not reset:
                    continue  # moved on meanwhile (confirmed, revoked): its own path has it
                outcome.effects.append(
                    Effect(
                        SET_EFFECT,
                        f"access:set:{code.id}:reconcile:{now.isoformat()}",
                        {"code": code.id},
                    )
                )
                report.reprogrammed.append(code.id)
            elif abs(found.ends_at - code.ends_at) > timedelta(minutes=1) or abs(
                found.starts_at - code.starts_at
            ) > timedelta(minutes=1):
                report.drift.append(code.id)
                outcome.effects.append(
                    Effect(
                        UPDATE_EFFECT,
                        f"access:update:{code.id}:reconcile:{now.isoformat()}",
                        {"code": code.id},
                    )
                )
        for code in await AccessCode.filter(lock_id=lock.id, state=AccessCodeState.REMOVING):
            listed_code = on_lock.get(code.provider_ref or "")
            if code.provider_ref and (
                listed_code is None or listed_code.status == CodeStatus.REMOVED
            ):
                # Absent from the lock's own list: the removal is proved, webhook or not.
                confirmed = await AccessCode.filter(
                    id=code.id, state=AccessCodeState.REMOVING
                ).update(state=AccessCodeState.REMOVED, last_error="")
                if confirmed:
                    outcome = outcome + removal_confirmed(code, lock, now)
                    report.removals_confirmed.append(code.id)
        if report.strays_removed or report.strays_stuck or report.reprogrammed or report.drift:
            outcome.alerts.append(
                Alert(
                    "lock_drift",
                    f"lock-drift:{lock.key}",
                    "ops.lock_drift",
                    {
                        "lock": lock.label,
                        "strays": len(report.strays_removed) + len(report.strays_stuck),
                        "missing": len(report.reprogrammed),
                        "drift": len(report.drift),
                    },
                )
            )
        if not report.clean:
            outcome.audits.append(
                Audit(
                    "system",
                    "access.reconciled",
                    f"lock:{lock.key}",
                    {
                        "strays_removed": len(report.strays_removed),
                        "strays_stuck": len(report.strays_stuck),
                        "reprogrammed": report.reprogrammed,
                        "drift": report.drift,
                        "removals_requeued": report.removals_requeued,
                        "removals_confirmed": report.removals_confirmed,
                    },
                )
            )
        async with in_transaction() as conn:
            await stage_outcome(conn, outcome, now)
        return report

    async def on_reconcile_due(self, event: TimerFired) -> Outcome:
        """The scheduled pass over every lock; it sets its own next run."""
        outcome = Outcome(
            timers=[
                SetTimer(
                    RECONCILE_TIMER, self.clock.now() + self.policy.reconcile_every, RECONCILE_KEY
                )
            ]
        )
        for lock in await Lock.filter(retired_at__isnull=True).order_by("key"):
            if lock.provider not in self.providers:
                continue
            try:
                await self.reconcile(lock)
            except LockError as err:
                log.warning("reconciling %s failed: %s", lock.key, type(err).__name__)
                outcome.alerts.append(
                    Alert(
                        "lock_unreachable",
                        f"lock-unreachable:{lock.key}",
                        "ops.lock_unreachable",
                        {"lock": lock.label},
                    )
                )
        return outcome

    async def on_code_removed(self, event: TimerFired) -> Outcome:
        """A booking's code is off its lock. A renter whose booking was cancelled was told its
        code is being switched off; once every code of it is off (none lapsing by itself, as an
        offline one does), they are told it no longer works, once."""
        booking = await Booking.get_or_none(id=int(event.payload["booking"]))
        if self.notifier is None or booking is None or booking.state != BookingState.CANCELLED:
            return Outcome()
        now = self.clock.now()
        codes = await AccessCode.filter(booking_id=booking.id)
        if any(
            code.state not in (AccessCodeState.REMOVED, AccessCodeState.FAILED)
            or (code.last_error == LAPSES and code.ends_at > now)
            for code in codes
        ):
            return Outcome()
        notifier, subject = self.notifier, f"booking:{booking.reference}"

        async def tell(conn: BaseDBAsyncClient) -> Outcome:
            told = AuditEvent.filter(action=CODE_OFF_TOLD, subject=subject).using_db(conn)
            if await told.exists():
                return Outcome()
            await notifier.tell(
                conn,
                booking.renter_id,
                "access.code_off",
                now=now,
                kind="receipt",
                params={"reference": booking.reference},
            )
            return Outcome(audits=[Audit("system", CODE_OFF_TOLD, subject)])

        return Outcome(writes=[tell])

    async def check_pin(self, lock: Lock, pin: str, at: datetime) -> bool:
        """The keypad test of the simulated lock, for the sandbox and tests."""
        provider = self._provider(lock)
        try_keypad = getattr(provider, "try_keypad", None)
        if try_keypad is None:
            raise CapabilityMissing(f"{lock.provider} locks have no keypad Keyturn can try")
        result: bool = await try_keypad(lock.device_id, pin, at)
        return result


def rejected_alert(lock: Lock, reason: str) -> Alert:
    """Ops hear that a lock refused a code (to set it, or to move it to a new window)."""
    return Alert(
        "code_rejected",
        f"code-rejected:{lock.key}",
        "ops.code_rejected",
        {"lock": lock.label, "reason": reason},
    )


def pin_rules_alert(lock: Lock, constraints: CodeConstraints) -> Alert:
    """Ops hear that Keyturn may not choose a PIN for a lock whose rules it does not know."""
    rules = ", ".join(constraints.unknown_rules) or "the lock sets its own PINs"
    return Alert(
        "pin_rules_unknown",
        f"pin-rules-unknown:{lock.key}",
        "ops.pin_rules_unknown",
        {"lock": lock.label, "rules": rules},
    )


def confirm_key(code_id: int) -> str:
    return f"access:confirm:{code_id}"


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


def deadline_key(code_id: int) -> str:
    return f"access:deadline:{code_id}"


def _computes_own_pin(lock: Lock) -> bool:
    """Locks that only take offline, algorithmic codes choose their PIN themselves."""
    capabilities = capabilities_from_json(lock.capabilities, lock.provider)
    return LockCapability.OFFLINE_CODES in capabilities and lock.provider == "igloohome"


def _lock_sets_pin(lock: Lock) -> bool:
    """A Seam lock whose PIN Keyturn must not choose (a rule it does not know, or the lock sets
    its own): Seam generates one that meets the lock's rules when asked without a PIN."""
    constraints = constraints_from_json(lock.code_constraints)
    return lock.provider == "seam" and not constraints.keyturn_may_choose


def _may_choose_pin(lock: Lock) -> bool:
    """Keyturn knows every PIN rule of the lock and may choose one."""
    return constraints_from_json(lock.code_constraints).keyturn_may_choose


def _takes_offline_backup(lock: Lock, code: AccessCode) -> bool:
    """A lock that takes online codes and can also be given an offline one."""
    capabilities = capabilities_from_json(lock.capabilities, lock.provider)
    return (
        LockCapability.OFFLINE_CODES in capabilities
        and not _computes_own_pin(lock)
        and not code.offline
    )


def _same_code(programmed: ProgrammedCode, request: CodeRequest) -> bool:
    """The code on the lock is the one ``request`` asked for: its PIN from its start, or for an
    offline code (whose PIN the vendor chose) its name and window."""
    if request.offline:  # the lock may have shortened the name
        return (
            programmed.offline
            and bool(programmed.name)
            and request.name.startswith(programmed.name)
            and (programmed.starts_at, programmed.ends_at) == (request.starts_at, request.ends_at)
        )
    return programmed.pin == request.pin and programmed.starts_at == request.starts_at


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


def _remove_effect(code_id: int) -> Effect:
    return Effect(REMOVE_EFFECT, f"access:remove:{code_id}", {"code": code_id}, critical=True)


def _remove_again(code_id: int, why: str, now: datetime) -> Effect:
    """A removal queued again for a code whose earlier one was lost or did not take."""
    key = f"access:remove:{code_id}:{why}:{now.isoformat()}"
    return Effect(REMOVE_EFFECT, key, {"code": code_id}, critical=True)
