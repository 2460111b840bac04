"""What every part of the access-code lifecycle is given: the lock providers, the sealer that
keeps PINs encrypted, the clock, the policy, and who tells renters."""

from __future__ import annotations

from collections.abc import Mapping

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.access.kinds import LIVE_STATES
from flows.access.lock_rules import computes_own_pin
from flows.access.policy import AccessPolicy
from flows.clock import Clock
from flows.lead_times import LeadTimes
from flows.notify import Notifier
from locks import CodeRequest, LockProvider, LockUnavailable
from locks.windows import AccessWindow
from storage.models import AccessCode, Location, Lock
from storage.sealing import Sealer


class AccessContext:
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

    async def lead_times_of(self, lock: Lock, conn: BaseDBAsyncClient | None = None) -> LeadTimes:
        """The lead times of the location ``lock`` is at."""
        return self.lead_times_at(await Location.filter(id=lock.location_id).using_db(conn).get())

    def provider(self, lock: Lock) -> LockProvider:
        provider = self.providers.get(lock.provider)
        if provider is None:
            raise LockUnavailable(f"the {lock.provider} provider is not configured")
        return provider

    async def taken(
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

    def request(self, code: AccessCode, lock: Lock) -> CodeRequest:
        """What the lock is asked to hold for ``code``."""
        return CodeRequest(
            device_id=lock.device_id,
            pin=self.sealer.open(code.pin_encrypted) if code.pin_encrypted else None,
            starts_at=code.starts_at,
            ends_at=code.ends_at,
            name=f"{code.label} #{code.id}",
            timezone=lock.timezone,
            offline=code.offline and not computes_own_pin(lock),
        )
