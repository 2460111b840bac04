"""The access-code lifecycle: plan, program, confirm, move, revoke and reconcile.

A code is planned in the transaction that decides it (a confirmed booking, a staff code), with
timers that program it ahead of its window, check it is set by a deadline, and revoke it when the
window ends. Programming and removal are outbox effects, so a lock cloud that is down delays them
and they are retried; removal is critical and retried until the provider confirms or a person
decides. Nothing here opens a transaction: handlers are handed the runner's connection, effect
executors ask the lock and return the follow-up that records its answer, timer handlers return
their state changes as writes, and every change of a code's state goes through the transition
table in ``storage.codes``. Every step is audited and nothing here logs a PIN.

``AccessCodes`` is the face the rest of Keyturn uses; the modules hold the logic:
``planning`` (plan, move, revoke), ``programming`` (the set effect), ``updates`` (the window
update effect), ``removal`` (the remove effect and proving a code gone), ``confirmation``
(learning a code is set), ``offline`` (offline backups, whole hours), ``reconcile``,
``timers`` (the timer handlers), ``kinds`` (persisted names), ``policy`` and ``lock_rules``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access import confirmation, planning, programming, removal, timers, updates
from flows.access import reconcile as reconciling
from flows.access.confirmation import became_set
from flows.access.context import AccessContext
from flows.access.kinds import (
    CODE_NOT_MOVED_TIMER,
    CODE_REMOVED_TIMER,
    CODE_SET_TIMER,
    CONFIRM_TIMER,
    DEADLINE_TIMER,
    LIVE_STATES,
    PROGRAM_TIMER,
    RECONCILE_KEY,
    RECONCILE_TIMER,
    REMOVAL_CHECK_TIMER,
    REMOVE_EFFECT,
    REVOKE_TIMER,
    SET_EFFECT,
    UPDATE_EFFECT,
    confirm_key,
    deadline_key,
)
from flows.access.lock_rules import rejected_alert
from flows.access.planning import locks_for_booking
from flows.access.policy import OFFLINE_HOURLY_MAX, AccessPlanError, AccessPolicy, ReconcileReport
from flows.access.reconcile import Reconciliation
from flows.access.removal import removal_confirmed
from flows.effects import EffectExecutor, FollowUp, Outcome, Write
from flows.timers import TimerFired, TimerHandler
from locks import CapabilityMissing
from locks.windows import AccessWindow
from storage.models import AccessCode, Booking, Lock, OutboxEffect, StaffMember

__all__ = [
    "CODE_NOT_MOVED_TIMER",
    "CODE_REMOVED_TIMER",
    "CODE_SET_TIMER",
    "CONFIRM_TIMER",
    "DEADLINE_TIMER",
    "LIVE_STATES",
    "OFFLINE_HOURLY_MAX",
    "PROGRAM_TIMER",
    "RECONCILE_KEY",
    "RECONCILE_TIMER",
    "REMOVAL_CHECK_TIMER",
    "REMOVE_EFFECT",
    "REVOKE_TIMER",
    "SET_EFFECT",
    "UPDATE_EFFECT",
    "AccessCodes",
    "AccessPlanError",
    "AccessPolicy",
    "ReconcileReport",
    "Reconciliation",
    "became_set",
    "confirm_key",
    "deadline_key",
    "locks_for_booking",
    "rejected_alert",
    "removal_confirmed",
]


class AccessCodes(AccessContext):
    """The access-code lifecycle as the rest of Keyturn calls it: planning inside the caller's
    unit of work, the effect executors, the timer handlers and reconciliation."""

    def executors(self) -> Mapping[str, EffectExecutor]:
        """The effects of the access-code lifecycle and what runs each."""
        return {
            SET_EFFECT: self.execute_set,
            REMOVE_EFFECT: self.execute_remove,
            UPDATE_EFFECT: self.execute_update,
        }

    def timer_handlers(self) -> Mapping[str, TimerHandler]:
        """The timers of the access-code lifecycle and what handles each."""
        return {
            PROGRAM_TIMER: self.on_program_due,
            DEADLINE_TIMER: self.on_deadline,
            CONFIRM_TIMER: self.on_confirm_due,
            REVOKE_TIMER: self.on_revoke_due,
            REMOVAL_CHECK_TIMER: self.on_removal_check,
            CODE_REMOVED_TIMER: self.on_code_removed,
            RECONCILE_TIMER: self.on_reconcile_due,
        }

    # -- planning, moving and revoking (inside the caller's unit of work) ---------------------

    async def plan_booking_codes(self, conn: BaseDBAsyncClient, booking: Booking) -> Outcome:
        return await planning.plan_booking_codes(self, conn, booking)

    async def plan_staff_code(
        self,
        conn: BaseDBAsyncClient,
        staff: StaffMember,
        lock: Lock,
        window: AccessWindow,
        label: str,
    ) -> Outcome:
        return await planning.plan_staff_code(self, conn, staff, lock, window, label)

    async def revoke(
        self, conn: BaseDBAsyncClient, codes: list[AccessCode], *, actor: str, reason: str
    ) -> Outcome:
        return await planning.revoke(self, conn, codes, actor=actor, reason=reason)

    async def move_window(
        self, conn: BaseDBAsyncClient, booking: Booking, window: AccessWindow
    ) -> tuple[Outcome, list[str]]:
        """Move a booking's codes to ``window``: in place where the lock can, else replaced.

        Returns the outcome and the labels of the locks whose PIN changes, so the renter is told.
        """
        return await planning.move_window(self, conn, booking, window)

    async def part_item_pins(self, conn: BaseDBAsyncClient, booking: Booking) -> Outcome:
        """Replace the item's codes of a booking whose item PIN must differ from the gates'
        but does not (planned before the item's PIN waited for its pickup check)."""
        return await planning.part_item_pins(self, conn, booking)

    async def look_up(self, code: AccessCode) -> dict[str, Any] | None:
        """Ask the provider whether a code still programming is set now: what to store with
        its move to ``set`` (the PIN of a code the vendor computes), or None while it is not."""
        return await confirmation.look_up(self, code)

    def record_set(self, code: AccessCode, fields: dict[str, Any], now: datetime) -> Write:
        """The write that stores a looked-up code as set, in the runner's unit of work."""

        async def record(conn: BaseDBAsyncClient) -> Outcome:
            return await confirmation.record_set(conn, code, fields, now) or Outcome()

        return record

    # -- effects (run by the outbox dispatcher, at least once) --------------------------------

    async def execute_set(self, effect: OutboxEffect) -> FollowUp | None:
        return await programming.execute_set(self, effect)

    async def execute_remove(self, effect: OutboxEffect) -> FollowUp | None:
        return await removal.execute_remove(self, effect)

    async def execute_update(self, effect: OutboxEffect) -> FollowUp | None:
        return await updates.execute_update(self, effect)

    # -- timers -------------------------------------------------------------------------------

    async def on_program_due(self, event: TimerFired) -> Outcome:
        return await timers.on_program_due(self, event)

    async def on_revoke_due(self, event: TimerFired) -> Outcome:
        return await timers.on_revoke_due(self, event)

    async def on_confirm_due(self, event: TimerFired) -> Outcome:
        return await timers.on_confirm_due(self, event)

    async def on_deadline(self, event: TimerFired) -> Outcome:
        return await timers.on_deadline(self, event)

    async def on_removal_check(self, event: TimerFired) -> Outcome:
        return await timers.on_removal_check(self, event)

    async def on_code_removed(self, event: TimerFired) -> Outcome:
        return await timers.on_code_removed(self, event)

    async def on_reconcile_due(self, event: TimerFired) -> Outcome:
        return await timers.on_reconcile_due(self, event)

    # -- reconciliation -----------------------------------------------------------------------

    async def reconcile(self, lock: Lock) -> Reconciliation:
        """Compare what the lock holds with what Keyturn expects; the runner commits
        ``record``, which puts it right and completes the report."""
        return await reconciling.reconcile(self, lock)

    async def check_pin(self, lock: Lock, pin: str, at: datetime) -> bool:
        """The keypad test of the simulated lock, for the sandbox and tests."""
        provider = self.provider(lock)
        try_keypad = getattr(provider, "try_keypad", None)
        if try_keypad is None:
            raise CapabilityMissing(f"{lock.provider} locks have no keypad Keyturn can try")
        result: bool = await try_keypad(lock.device_id, pin, at)
        return result
