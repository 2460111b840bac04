"""A lock that lives in Keyturn's own database.

It behaves like a cloud lock with time-windowed PINs: codes are set, moved and removed remotely,
it can be opened remotely, and its keypad accepts a PIN only inside the code's window. Tests and
the sandbox can take a device offline to see what Keyturn does when a lock cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from locks.pins import violations
from locks.port import (
    SEAM_PACE,
    CodeConstraints,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockDevice,
    LockNotFound,
    LockRateLimited,
    LockRejected,
    LockUnavailable,
    ProgrammedCode,
    RejectionReason,
    UnlockResult,
)
from storage import simulated_locks as store
from storage.models import Lock, SimulatedCode
from storage.sealing import Sealer

CAPABILITIES = (
    LockCapability.TIMED_PINS
    | LockCapability.UPDATE_WINDOW
    | LockCapability.REMOTE_UNLOCK
    | LockCapability.REMOTE_DELETE
    | LockCapability.STATUS
)
CONSTRAINTS = CodeConstraints(lengths=(4, 5, 6, 7, 8), max_active_codes=250)


class SimulatedLockProvider:
    name = "simulated"
    #: Seam's per-device limits, so the demo and the benchmarks show codes spread out.
    pace = SEAM_PACE

    def __init__(self, sealer: Sealer, now: Callable[[], datetime] | None = None) -> None:
        self.sealer = sealer
        self.now = now or (lambda: datetime.now(UTC))
        #: Device ids that behave as if their lock had lost its connection.
        self.offline: set[str] = set()
        #: How many creations were refused for the pace (429), as a cloud's dashboard counts.
        self.rate_limited = 0

    async def _lock(self, device_id: str) -> Lock:
        lock = await store.find_lock(self.name, device_id)
        if lock is None:
            raise LockNotFound(f"no simulated lock {device_id}")
        if device_id in self.offline:
            raise LockUnavailable(f"simulated lock {device_id} is offline")
        return lock

    def _device(self, lock: Lock) -> LockDevice:
        return LockDevice(
            device_id=lock.device_id,
            name=lock.label,
            capabilities=CAPABILITIES,
            constraints=CONSTRAINTS,
            online=lock.device_id not in self.offline,
            battery_level=1.0,
            model="Keyturn simulated keypad",
        )

    async def list_devices(self) -> list[LockDevice]:
        return [self._device(lock) for lock in await store.live_locks(self.name)]

    async def get_device(self, device_id: str) -> LockDevice:
        lock = await store.find_lock(self.name, device_id)
        if lock is None:
            raise LockNotFound(f"no simulated lock {device_id}")
        return self._device(lock)

    async def create_code(self, request: CodeRequest) -> ProgrammedCode:
        lock = await self._lock(request.device_id)
        if request.pin is None:
            raise LockRejected(RejectionReason.INVALID_CODE, "a simulated lock needs a PIN")
        if violations(request.pin, CONSTRAINTS):
            raise LockRejected(RejectionReason.INVALID_CODE, "the PIN breaks the lock's rules")
        pin = request.pin
        now = self.now()
        # A keypad refuses a PIN it already holds, whoever asks at the same moment, and the
        # cloud a creation past its pace: storage runs these checks and the insert under the
        # lock row's row lock.
        row = await store.add_code(
            lock,
            check=lambda active, recent: self._fits(request.device_id, pin, active, recent, now),
            name=request.name,
            pin_sealed=self.sealer.seal(pin),
            starts_at=request.starts_at,
            ends_at=request.ends_at,
            created_at=now,
        )
        return self._programmed(row, pin)

    def _fits(
        self,
        device_id: str,
        pin: str,
        active: list[SimulatedCode],
        recent: list[datetime],
        now: datetime,
    ) -> None:
        limit = self.pace.creations_per_minute
        if len(recent) >= limit:
            # As Seam does past its per-device limit: 429, try again when the minute has room.
            room_at = recent[-limit] + timedelta(minutes=1)
            self.rate_limited += 1
            raise LockRateLimited(
                f"simulated lock {device_id} took {limit} codes in the last minute",
                max((room_at - now).total_seconds(), 0.0),
            )
        if len(active) >= (CONSTRAINTS.max_active_codes or len(active) + 1):
            raise LockRejected(RejectionReason.NO_SPACE, "the lock holds no more codes")
        for code in active:
            if self.sealer.open(code.pin_encrypted) == pin:
                raise LockRejected(RejectionReason.DUPLICATE_CODE, "the lock has this PIN already")

    async def update_code_window(
        self, device_id: str, provider_ref: str, starts_at: datetime, ends_at: datetime
    ) -> ProgrammedCode:
        await self._lock(device_id)
        row = await self._code(device_id, provider_ref)
        await store.move_code(row, starts_at, ends_at)
        return self._programmed(row, self.sealer.open(row.pin_encrypted))

    async def delete_code(self, device_id: str, provider_ref: str) -> None:
        await self._lock(device_id)
        await store.remove_code(device_id, _ref(provider_ref), self.now())

    async def get_code(self, device_id: str, provider_ref: str) -> ProgrammedCode | None:
        await self._lock(device_id)
        row = await store.find_code(device_id, _ref(provider_ref))
        return None if row is None else self._programmed(row, self.sealer.open(row.pin_encrypted))

    async def list_codes(self, device_id: str) -> list[ProgrammedCode]:
        await self._lock(device_id)
        return [
            self._programmed(row, self.sealer.open(row.pin_encrypted))
            for row in await store.active_codes(device_id)
        ]

    async def unlock(
        self, device_id: str, *, wait: float | None = None, within: float | None = None
    ) -> UnlockResult:
        """Opens at once: the confirmation is the unlock itself."""
        await self._lock(device_id)
        await store.record_try(device_id, source="remote", accepted=True, at=self.now())
        return UnlockResult(confirmed=True)

    async def confirm_unlock(
        self, device_id: str, action_id: str, *, wait: float | None = None
    ) -> UnlockResult:
        """Nothing is ever pending on a simulated lock."""
        await self._lock(device_id)
        return UnlockResult(confirmed=True)

    async def try_keypad(self, device_id: str, pin: str, at: datetime) -> bool:
        """Would the keypad open for ``pin`` at the instant ``at``? Every try is logged."""
        accepted = any(
            row.starts_at <= at < row.ends_at and self.sealer.open(row.pin_encrypted) == pin
            for row in await store.active_codes(device_id)
        )
        await store.record_try(device_id, source="keypad", accepted=accepted, at=at)
        return accepted

    async def _code(self, device_id: str, provider_ref: str) -> SimulatedCode:
        row = await store.find_code(device_id, _ref(provider_ref))
        if row is None:
            raise LockNotFound(f"no code {provider_ref} on simulated lock {device_id}")
        return row

    @staticmethod
    def _programmed(row: SimulatedCode, pin: str) -> ProgrammedCode:
        return ProgrammedCode(
            provider_ref=f"sim-{row.id}",
            device_id=row.device_id,
            pin=pin,
            status=CodeStatus.SET,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
        )


def _ref(provider_ref: str) -> int:
    try:
        return int(provider_ref.removeprefix("sim-"))
    except ValueError:
        raise LockNotFound(f"no simulated code {provider_ref}") from None
