"""The LockProvider port: what Keyturn asks of any lock, and how a lock says what it can do."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Flag, auto
from typing import Protocol, runtime_checkable

#: Lock vendors Keyturn speaks to, by the name the inventory uses.
PROVIDER_NAMES: tuple[str, ...] = ("simulated", "seam", "igloohome", "nuki")


class LockError(Exception):
    """Root of every error a lock provider raises. Vendor errors are turned into these."""


class LockUnavailable(LockError):
    """The lock or its cloud cannot be reached right now: worth retrying."""


class CapabilityMissing(LockError):
    """The lock was asked for something it has declared it cannot do."""


class LockCapability(Flag):
    NONE = 0
    TIMED_PINS = auto()
    UPDATE_WINDOW = auto()
    OFFLINE_CODES = auto()
    REMOTE_UNLOCK = auto()
    STATUS = auto()
    PUSHED_EVENTS = auto()


@dataclass(frozen=True)
class CodeConstraints:
    lengths: tuple[int, ...] = (4, 5, 6)
    no_zeros: bool = False
    cannot_start_with_12: bool = False
    min_unique_digits: int = 0
    missing_digits: frozenset[str] = field(default_factory=frozenset)
    max_active_codes: int | None = None


@dataclass(frozen=True)
class ProgrammedCode:
    provider_ref: str
    is_set: bool


@runtime_checkable
class LockProvider(Protocol):
    """One vendor's locks. Every call has a timeout and raises only LockError subclasses."""

    name: str

    def capabilities(self, device_id: str) -> LockCapability: ...

    def constraints(self, device_id: str) -> CodeConstraints: ...

    async def set_code(
        self, device_id: str, pin: str, starts_at: datetime, ends_at: datetime, label: str
    ) -> ProgrammedCode: ...

    async def remove_code(self, device_id: str, provider_ref: str) -> None: ...

    async def unlock(self, device_id: str) -> None: ...


def require(provider: LockProvider, device_id: str, capability: LockCapability) -> None:
    """Refuse, with a clear error, a call the lock has not declared it can do."""
    if capability not in provider.capabilities(device_id):
        raise CapabilityMissing(f"{provider.name} lock {device_id} cannot {capability.name}")
