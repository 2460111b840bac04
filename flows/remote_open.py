"""A remote open lives a short time: tried within it, reported once the lock confirms it.

A door that unlocks minutes after it was asked for may open with nobody there, so each open
request carries its deadline (``expires_at``). Within it the dispatcher retries; the one who
asked hears "open" only when the provider confirms the unlock. Past it no attempt is made: a
renter hears that the door could not be opened and how to reach a person, and ops is alerted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from flows.access import AccessCodes
from flows.clock import Clock
from flows.effects import Alert, Audit, Effect, Outcome
from flows.notify import Notifier
from flows.staging import stage_outcome
from locks.port import LockError, LockUnavailable
from storage.models import Lock, OutboxEffect

log = logging.getLogger(__name__)

OPEN_EFFECT = "lock.open"
#: How long an open request lives when the settings do not say.
OPEN_LIFETIME = timedelta(seconds=60)


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
    def __init__(self, access: AccessCodes, notifier: Notifier, clock: Clock) -> None:
        self.access = access
        self.notifier = notifier
        self.clock = clock

    async def execute(self, effect: OutboxEffect) -> None:
        """Unlock within the request's lifetime; a transient failure is raised for a retry
        (which the dispatcher brings forward to the deadline at the latest)."""
        lock = await Lock.get(id=int(str(effect.payload["lock"])))
        deadline = open_deadline(effect)
        left = (deadline - self.clock.now()).total_seconds()
        provider = self.access.providers.get(lock.provider)
        if left <= 0 or provider is None:
            await self._could_not_open(effect, lock, "its time ran out" if left <= 0 else "")
            return
        try:
            # The provider's own wait for the lock's confirmation ends with the request.
            async with asyncio.timeout(left):
                await provider.unlock(lock.device_id)
        except TimeoutError as err:
            raise LockUnavailable(f"{lock.key}: unlock not confirmed in time") from err
        except LockUnavailable:
            raise
        except LockError as err:  # refused, not there, cannot unlock: trying again won't help
            log.warning("remote open of %s refused: %s", lock.key, type(err).__name__)
            await self._could_not_open(effect, lock, type(err).__name__)
            return
        await self._opened(effect, lock)

    async def _opened(self, effect: OutboxEffect, lock: Lock) -> None:
        now = self.clock.now()
        renter, booking, staff = _who(effect)
        if renter is not None:
            alert = Alert(
                "remote_open",
                f"remote-open:{booking}",
                "ops.remote_open",
                {"booking": booking, "locks": lock.label},
            )
        else:
            alert = Alert(
                "remote_open",
                f"remote-open:lock:{lock.key}",
                "ops.opened",
                {"lock": lock.label, "who": staff or "ops"},
            )
        outcome = Outcome(
            alerts=[alert], audits=[Audit("dispatcher", "lock.remote_opened", f"lock:{lock.key}")]
        )
        await self._record(renter, "journey.opened", lock, outcome, now)

    async def _could_not_open(self, effect: OutboxEffect, lock: Lock, why: str) -> None:
        now = self.clock.now()
        renter, booking, staff = _who(effect)
        who = f"booking {booking}" if renter is not None else (staff or "ops")
        outcome = Outcome(
            alerts=[
                Alert(
                    "remote_open_failed",
                    f"remote-open-failed:{lock.key}",
                    "ops.open_failed",
                    {"lock": lock.label, "who": who, "why": why or "no lock provider"},
                )
            ],
            audits=[Audit("dispatcher", "lock.remote_open_failed", f"lock:{lock.key}")],
        )
        await self._record(renter, "journey.open_failed", lock, outcome, now)

    async def _record(
        self, renter: int | None, key: str, lock: Lock, outcome: Outcome, now: datetime
    ) -> None:
        """Tell the renter and ops what came of the request. Tried twice: two opens of one
        booking that finish together both open its alert, and the second folds into the first
        on its next try. Raising would retry the effect, and open the door again."""
        for last in (False, True):
            try:
                async with in_transaction() as conn:
                    if renter is not None:
                        await self.notifier.tell(
                            conn, renter, key, now=now, kind="receipt", params=_lock(lock)
                        )
                    await stage_outcome(conn, outcome, now)
                return
            except IntegrityError:
                if last:
                    raise


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
