"""A remote open lives a short time: tried within it, reported once the lock confirms it.

A door that unlocks minutes after it was asked for may open with nobody there, so each open
request carries its deadline (``expires_at``). Within it the dispatcher retries; the one who
asked hears "open" only when the provider confirms the unlock. Past it no attempt is made: a
renter hears that the door could not be opened and how to reach a person, and ops is alerted.

An unlock the vendor took but has not confirmed yet may still happen, so it is never sent
again: its handle (``action``) goes into a follow-up open request that only polls it. One still
pending when the lifetime ends is reported as not confirmed: the renter is not told "open", and
ops hear that the door may open late.

An unlock whose answer was lost (a timeout or a dropped connection once it was sent) may have
reached the lock too, with no handle to poll: it is reported as not confirmed, never sent again.
So is an attempt that follows one which may have sent an unlock without its result being
recorded (the dispatcher's timeout cut it, the worker died, the commit after it failed): only an
attempt that recorded "sent no unlock" as its failure lets the next one send. And each attempt
keeps within one budget, from its start, inside the dispatcher's timeout for an effect, so that
the timeout never cuts an unlock after it was sent.

A renter's open is carried out only while their booking is confirmed or active and inside its
window: one cancelled (or ended) since OPEN is not opened, and the renter is told why.

The executor does the outside call outside any transaction and returns a follow-up; the
dispatcher runs it in the unit of work that marks the request done.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access import AccessCodes
from flows.bookings import stored_range
from flows.clock import Clock
from flows.effects import Alert, Audit, Effect, FollowUp, Outcome
from flows.notify import Notifier
from locks.confirm import Budget
from locks.port import LockError, LockOutcomeUnknown, LockProvider, LockUnavailable, UnlockResult
from storage.kinds import AlertKind, EffectKind
from storage.models import Booking, BookingState, Lock, OutboxEffect

log = logging.getLogger(__name__)

OPEN_EFFECT = EffectKind.LOCK_OPEN
#: How long an open request lives when the settings do not say.
OPEN_LIFETIME = timedelta(seconds=60)
#: The most one attempt waits for the lock's confirmation before leaving it to a later poll
#: (well inside the dispatcher's timeout for an effect).
CONFIRM_WAIT = 10.0
#: The most one attempt takes, from its start: the dispatcher's timeout for an effect (30 s by
#: default) less a margin for the database reads around the unlock. An unlock is sent only
#: with time left to read its answer, so the dispatcher never cuts one after it was sent.
UNLOCK_BUDGET = 25.0
#: Bookings a renter's open is still carried out for.
OPENABLE = (BookingState.CONFIRMED, BookingState.ACTIVE)


class UnlockNotSent(Exception):
    """An attempt that failed before any unlock went out (the lock unreachable, or it said it
    could not now): the next attempt may send one. Its message names the attempt, and the
    dispatcher records it as the effect's last error."""

    def __init__(self, attempt: int, why: object) -> None:
        super().__init__(f"{_not_sent(attempt)}: {why}")


def _not_sent(attempt: int) -> str:
    return f"attempt {attempt} sent no unlock"


def _may_have_sent_before(effect: OutboxEffect) -> bool:
    """Whether an earlier attempt may have sent an unlock whose result was never recorded: the
    last one did not fail with "sent no unlock" (it was cut by the timeout, its worker died or
    stopped, or the commit of its result failed)."""
    if effect.attempts <= 1:
        return False
    return _not_sent(effect.attempts - 1) not in effect.last_error


def open_effect(
    lock: Lock,
    key: str,
    *,
    now: datetime,
    lifetime: timedelta,
    renter_id: int | None = None,
    booking: str | None = None,
    staff: str | None = None,
) -> Effect:
    """An open request for ``lock``, for a renter's booking or for a staff member."""
    payload: dict[str, object] = {"lock": lock.id, "expires_at": (now + lifetime).isoformat()}
    if renter_id is not None:
        payload.update(renter=renter_id, booking=booking)
    if staff is not None:
        payload["staff"] = staff
    return Effect(OPEN_EFFECT, key, payload)


def open_deadline(effect: OutboxEffect) -> datetime:
    """When the request stops being worth carrying out (requests staged without one: their
    staging time and the default lifetime)."""
    raw = effect.payload.get("expires_at")
    if isinstance(raw, str):
        return datetime.fromisoformat(raw)
    return effect.created_at + OPEN_LIFETIME


class RemoteOpens:
    def __init__(
        self,
        access: AccessCodes,
        notifier: Notifier,
        clock: Clock,
        *,
        unlock_budget: float = UNLOCK_BUDGET,
    ) -> None:
        """``unlock_budget``: the most one attempt takes (keep it under the dispatcher's
        timeout for an effect, with a margin)."""
        self.access = access
        self.notifier = notifier
        self.clock = clock
        self.unlock_budget = unlock_budget

    async def execute(self, effect: OutboxEffect) -> FollowUp:
        """Unlock within the request's lifetime, or poll the unlock an earlier attempt sent; a
        transient failure before anything was sent is raised for a retry (which the dispatcher
        brings forward to the deadline at the latest). What came of it is told by the returned
        follow-up."""
        budget = Budget(self.unlock_budget)
        try:
            lock = await Lock.get(id=int(str(effect.payload["lock"])))
            refused = await self._booking_refuses(effect)
        except Exception as err:  # the database: nothing was sent
            raise UnlockNotSent(effect.attempts, type(err).__name__) from err
        left = (open_deadline(effect) - self.clock.now()).total_seconds()
        provider = self.access.providers.get(lock.provider)
        if provider is None:
            return self._could_not_open(effect, lock, "")
        action = effect.payload.get("action")
        if isinstance(action, str):
            return await self._confirm(effect, lock, provider, action, left, budget)
        if refused is not None:
            return self._refused(effect, lock, refused)
        if left <= 0:
            return self._could_not_open(effect, lock, "its time ran out")
        if _may_have_sent_before(effect):
            log.warning("remote open of %s: an earlier attempt may have sent it", lock.key)
            return self._not_confirmed(effect, lock)
        try:
            result = await provider.unlock(
                lock.device_id, wait=min(left, CONFIRM_WAIT), within=budget.left()
            )
        except LockUnavailable as err:  # nothing was done: the next attempt may send it
            raise UnlockNotSent(effect.attempts, err) from err
        except LockOutcomeUnknown as err:  # sent, its answer lost: it may yet happen
            log.warning("remote open of %s: outcome unknown: %s", lock.key, type(err).__name__)
            return self._not_confirmed(effect, lock)
        except LockError as err:  # refused, not there, cannot unlock: trying again won't help
            log.warning("remote open of %s refused: %s", lock.key, type(err).__name__)
            return self._could_not_open(effect, lock, type(err).__name__)
        if result.confirmed:
            return self._opened(effect, lock)
        if result.action_id is None:  # nothing to poll: it cannot be confirmed
            return self._not_confirmed(effect, lock)
        return self._pending(effect, result)

    async def _booking_refuses(self, effect: OutboxEffect) -> BookingState | None:
        """For a renter's open: the booking's state when it no longer allows one (cancelled,
        ended, or outside its window now), else None."""
        renter, reference, _ = _who(effect)
        if renter is None or reference is None:
            return None
        booking = await Booking.get_or_none(reference=reference)
        if booking is None:
            return BookingState.CANCELLED
        if booking.state not in OPENABLE or not stored_range(booking).contains(self.clock.now()):
            return BookingState(booking.state)
        return None

    async def _confirm(
        self,
        effect: OutboxEffect,
        lock: Lock,
        provider: LockProvider,
        action: str,
        left: float,
        budget: Budget,
    ) -> FollowUp:
        """Poll the unlock already sent; past the lifetime a pending one is not confirmed."""
        try:
            result = await provider.confirm_unlock(
                lock.device_id, action, wait=max(0.0, budget.cap(min(left, CONFIRM_WAIT)))
            )
        except LockUnavailable:
            if left <= 0:
                return self._not_confirmed(effect, lock)
            raise
        except LockError as err:  # the lock reported the unlock failed
            log.warning("remote open of %s failed on the lock: %s", lock.key, type(err).__name__)
            return self._could_not_open(effect, lock, type(err).__name__)
        if result.confirmed:
            return self._opened(effect, lock)
        if left <= 0:
            return self._not_confirmed(effect, lock)
        raise LockUnavailable(f"{lock.key}: the unlock is not confirmed yet")

    def _pending(self, effect: OutboxEffect, result: UnlockResult) -> FollowUp:
        """Hand the pending unlock to a request that polls it until the same deadline."""
        payload = {**effect.payload, "action": result.action_id}
        follow = Effect(OPEN_EFFECT, f"{effect.idempotency_key}:confirm", payload)

        async def follow_up(conn: BaseDBAsyncClient) -> Outcome:
            return Outcome(effects=[follow])

        return follow_up

    def _opened(self, effect: OutboxEffect, lock: Lock) -> FollowUp:
        renter, booking, staff = _who(effect)
        if renter is not None:
            alert = Alert(
                AlertKind.REMOTE_OPEN,
                f"remote-open:{booking}",
                "ops.remote_open",
                {"booking": booking, "locks": lock.label},
            )
        else:
            alert = Alert(
                AlertKind.REMOTE_OPEN,
                f"remote-open:lock:{lock.key}",
                "ops.opened",
                {"lock": lock.label, "who": staff or "ops"},
            )
        outcome = Outcome(
            alerts=[alert], audits=[Audit("dispatcher", "lock.remote_opened", f"lock:{lock.key}")]
        )
        return self._telling(renter, "journey.opened", lock, outcome)

    def _refused(self, effect: OutboxEffect, lock: Lock, state: BookingState) -> FollowUp:
        """The booking no longer allows an open: the door stays shut, the renter hears why and
        the trail says so."""
        renter, booking, _ = _who(effect)
        log.info("remote open of %s for booking %s dropped: %s", lock.key, booking, state)
        outcome = Outcome(
            audits=[
                Audit(
                    "dispatcher",
                    "lock.remote_open_dropped",
                    f"lock:{lock.key}",
                    {"booking": booking, "state": str(state)},
                )
            ]
        )
        return self._telling(renter, "journey.open_dropped", lock, outcome)

    def _could_not_open(self, effect: OutboxEffect, lock: Lock, why: str) -> FollowUp:
        renter, booking, staff = _who(effect)
        who = f"booking {booking}" if renter is not None else (staff or "ops")
        outcome = Outcome(
            alerts=[
                Alert(
                    AlertKind.REMOTE_OPEN_FAILED,
                    f"remote-open-failed:{lock.key}",
                    "ops.open_failed",
                    {"lock": lock.label, "who": who, "why": why or "no lock provider"},
                )
            ],
            audits=[Audit("dispatcher", "lock.remote_open_failed", f"lock:{lock.key}")],
        )
        return self._telling(renter, "journey.open_failed", lock, outcome)

    def _not_confirmed(self, effect: OutboxEffect, lock: Lock) -> FollowUp:
        """The lock took the unlock and never said it was done: it may yet open, late."""
        renter, booking, staff = _who(effect)
        who = f"booking {booking}" if renter is not None else (staff or "ops")
        outcome = Outcome(
            alerts=[
                Alert(
                    AlertKind.REMOTE_OPEN_UNCONFIRMED,
                    f"remote-open-unconfirmed:{lock.key}",
                    "ops.open_unconfirmed",
                    {"lock": lock.label, "who": who},
                )
            ],
            audits=[Audit("dispatcher", "lock.remote_open_unconfirmed", f"lock:{lock.key}")],
        )
        return self._telling(renter, "journey.open_unconfirmed", lock, outcome)

    def _telling(self, renter: int | None, key: str, lock: Lock, outcome: Outcome) -> FollowUp:
        """Tell the renter (if a renter asked) and hand back what ops hear. Two opens of one
        booking that finish together both raise its alert: raising folds into the open alert
        in one statement, so neither fails (a failing follow-up would open the door again)."""

        async def follow_up(conn: BaseDBAsyncClient) -> Outcome:
            if renter is not None:
                await self.notifier.tell(
                    conn, renter, key, now=self.clock.now(), kind="receipt", params=_lock(lock)
                )
            return outcome

        return follow_up


def _who(effect: OutboxEffect) -> tuple[int | None, str | None, str | None]:
    renter = effect.payload.get("renter")
    booking = effect.payload.get("booking")
    staff = effect.payload.get("staff")
    return (
        int(str(renter)) if renter is not None else None,
        str(booking) if booking is not None else None,
        str(staff) if staff is not None else None,
    )


def _lock(lock: Lock) -> dict[str, object]:
    return {"lock": lock.label}
