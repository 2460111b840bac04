"""The LockProvider port: what Keyturn asks of any lock, and how a lock says what it can do.

Capabilities are declared, not guessed: callers check ``LockDevice.capabilities`` before calling,
and an adapter asked for something its lock cannot do raises ``CapabilityMissing``. Every vendor
error is turned into one of the ``LockError`` subclasses below, and every outside call has a
timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Flag, StrEnum, auto
from typing import Protocol, runtime_checkable

#: Lock vendors Keyturn speaks to, by the name the inventory uses.
PROVIDER_NAMES: tuple[str, ...] = ("simulated", "seam", "igloohome", "nuki")


class LockError(Exception):
    """Root of every error a lock provider raises."""


class LockUnavailable(LockError):
    """The lock or its cloud cannot be reached right now (network, timeout, 5xx): retry later."""


class LockRateLimited(LockUnavailable):
    """The provider refused the call for its rate limit (HTTP 429): nothing was done. It is
    tried again once the provider has room, ``retry_after`` seconds from now where it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LockOutcomeUnknown(LockError):
    """An action was sent and its answer was lost (a timeout or a connection dropped after the
    request went out, an answer that cannot be read): the vendor may have taken it and the lock
    may act on it. It has no handle to poll, and it must never be sent again."""


class LockNotFound(LockError):
    """The provider does not know this device or code."""


class RejectionReason(StrEnum):
    DUPLICATE_CODE = "duplicate_code"  # another code on the lock has this PIN
    NO_SPACE = "no_space"  # the lock holds as many codes as it can
    INVALID_CODE = "invalid_code"  # the PIN breaks the lock's constraints
    INVALID_WINDOW = "invalid_window"  # the window is not one the lock can hold
    OTHER = "other"


class LockRejected(LockError):
    """The provider understood the request and refused it; retrying the same call will not help."""

    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CapabilityMissing(LockError):
    """The lock was asked for something it has declared it cannot do."""


class LockCapability(Flag):
    NONE = 0
    TIMED_PINS = auto()  # PINs valid only between starts_at and ends_at, set remotely
    UPDATE_WINDOW = auto()  # an existing code's window can be moved
    OFFLINE_CODES = auto()  # codes computed without reaching the lock (algorithmic PINs)
    REMOTE_UNLOCK = auto()
    REMOTE_DELETE = auto()  # a code can be removed remotely
    STATUS = auto()  # online state and battery are reported
    PUSHED_EVENTS = auto()  # the provider calls a webhook on changes


@dataclass(frozen=True)
class CodeConstraints:
    lengths: tuple[int, ...] = (4, 5, 6)
    no_zeros: bool = False
    cannot_start_with_12: bool = False
    no_triple_consecutive: bool = False  # e.g. 123, 987 or 555 anywhere in the PIN
    min_unique_digits: int = 0
    missing_digits: frozenset[str] = field(default_factory=frozenset)  # keys the keypad lacks
    max_active_codes: int | None = None
    #: A PIN's first four digits differ from those of every other code on the lock.
    unique_first_four_digits: bool = False
    #: Rules the lock reported that Keyturn does not know: it must not choose the PIN itself.
    unknown_rules: tuple[str, ...] = ()
    #: The lock sets its own PINs (Seam ``cannot_specify_pin_code``,
    #: ``pin_code_matches_existing_set``).
    lock_chooses_pin: bool = False

    @property
    def keyturn_may_choose(self) -> bool:
        """Whether Keyturn can pick a PIN this lock takes: it knows every rule and may set one."""
        return not self.unknown_rules and not self.lock_chooses_pin


@dataclass(frozen=True)
class LockDevice:
    """A device as its provider reports it."""

    device_id: str
    name: str
    capabilities: LockCapability
    constraints: CodeConstraints
    online: bool | None = None
    battery_level: float | None = None  # 0.0 – 1.0
    model: str = ""


class CodeStatus(StrEnum):
    SETTING = "setting"  # accepted by the provider, not yet confirmed on the lock
    SET = "set"
    REMOVING = "removing"
    REMOVED = "removed"
    FAILED = "failed"


@dataclass(frozen=True)
class CodeRequest:
    device_id: str
    #: The PIN to program; None asks the provider to compute one (algorithmic/offline codes).
    pin: str | None
    starts_at: datetime  # aware, UTC
    ends_at: datetime  # aware, UTC
    name: str  # shown in the vendor's app: a booking reference or a staff label
    timezone: str  # the lock's IANA time zone, for providers that take local times
    #: Codes created with the same key share one PIN across devices where the provider can.
    common_key: str | None = None
    #: An offline code (``OFFLINE_CODES``): the vendor computes it without reaching the lock,
    #: so it works while the lock is offline; it cannot be removed before its end.
    offline: bool = False


@dataclass(frozen=True)
class ProgrammedCode:
    provider_ref: str
    device_id: str
    pin: str
    status: CodeStatus
    starts_at: datetime
    ends_at: datetime
    offline: bool = False
    error: str | None = None
    warnings: tuple[str, ...] = ()
    #: The name the code was created with, where the provider reports it.
    name: str = ""


@dataclass(frozen=True)
class UnlockResult:
    """What an unlock came to: confirmed by the lock, or still pending under ``action_id``.

    A pending unlock may still happen later, so it is never asked again: whoever holds the
    handle polls it with ``LockProvider.confirm_unlock``. A refused or failed unlock is raised
    as a ``LockError`` instead.
    """

    confirmed: bool
    #: The vendor's handle for the pending action (a Seam action attempt, an igloohome job,
    #: the Nuki log entry it follows); None once confirmed where there is nothing to poll.
    action_id: str | None = None


@dataclass(frozen=True)
class CodePace:
    """How many code changes a provider takes per device in a minute, as its docs say: more
    are refused (429), so Keyturn spreads them out instead of sending them in a burst."""

    creations_per_minute: int
    updates_per_minute: int


#: Seam's documented per-device limits (docs.seam.co "Rate Limits and Guardrails"): 10 access
#: code creations and 10 updates a minute (20 deletions, 15 lock and 15 unlock requests).
SEAM_PACE = CodePace(creations_per_minute=10, updates_per_minute=10)
#: For a vendor that documents no per-device limit: Seam's, the strictest one documented.
CONSERVATIVE_PACE = SEAM_PACE


@runtime_checkable
class LockProvider(Protocol):
    """One vendor's locks. Every call has a timeout and raises only LockError subclasses."""

    name: str
    #: How fast codes may be created and moved on one of its devices.
    pace: CodePace

    async def list_devices(self) -> list[LockDevice]: ...

    async def get_device(self, device_id: str) -> LockDevice: ...

    async def create_code(self, request: CodeRequest) -> ProgrammedCode: ...

    async def update_code_window(
        self, device_id: str, provider_ref: str, starts_at: datetime, ends_at: datetime
    ) -> ProgrammedCode: ...

    async def delete_code(self, device_id: str, provider_ref: str) -> None:
        """Remove a code; a code that is already gone is not an error."""
        ...

    async def get_code(self, device_id: str, provider_ref: str) -> ProgrammedCode | None: ...

    async def list_codes(self, device_id: str) -> list[ProgrammedCode]: ...

    async def unlock(
        self, device_id: str, *, wait: float | None = None, within: float | None = None
    ) -> UnlockResult:
        """Ask the lock to unlock and wait up to ``wait`` seconds (the adapter's own bound when
        None) for its confirmation; a still-pending unlock comes back with its handle.

        ``within`` bounds the whole call from its start: a step before the unlock is sent that
        would run past it gives up with ``LockUnavailable`` (nothing was sent); a send it cuts
        short, or whose answer is lost, raises ``LockOutcomeUnknown``; the wait for the
        confirmation ends in time to return by it."""
        ...

    async def confirm_unlock(
        self, device_id: str, action_id: str, *, wait: float | None = None
    ) -> UnlockResult:
        """Poll an earlier unlock's handle for up to ``wait`` seconds; never unlocks again."""
        ...


def require(device: LockDevice, capability: LockCapability, provider: str) -> None:
    """Refuse, with a clear error, a call the lock has not declared it can do."""
    if capability not in device.capabilities:
        what = (capability.name or str(capability)).lower().replace("_", " ")
        raise CapabilityMissing(f"{provider} lock {device.device_id} cannot do {what}")


#: Until ``keyturn locks check`` has asked a lock, plan PINs that nearly every keypad accepts.
CONSERVATIVE_CONSTRAINTS = CodeConstraints(
    lengths=(6,),
    no_zeros=True,
    cannot_start_with_12=True,
    no_triple_consecutive=True,
    min_unique_digits=3,
    unique_first_four_digits=True,
)

#: What each provider's locks can do until a check has asked the device itself.
DEFAULT_CAPABILITIES: dict[str, LockCapability] = {
    "simulated": LockCapability.TIMED_PINS
    | LockCapability.UPDATE_WINDOW
    | LockCapability.REMOTE_UNLOCK
    | LockCapability.REMOTE_DELETE
    | LockCapability.STATUS,
    "seam": LockCapability.TIMED_PINS
    | LockCapability.UPDATE_WINDOW
    | LockCapability.REMOTE_DELETE
    | LockCapability.PUSHED_EVENTS,
    "igloohome": LockCapability.TIMED_PINS | LockCapability.OFFLINE_CODES,
    "nuki": LockCapability.TIMED_PINS
    | LockCapability.UPDATE_WINDOW
    | LockCapability.REMOTE_DELETE
    | LockCapability.REMOTE_UNLOCK
    | LockCapability.STATUS,
}


def capabilities_to_json(capabilities: LockCapability) -> list[str]:
    return sorted(c.name for c in LockCapability if c.name and c.value and c in capabilities)


def capabilities_from_json(names: object, provider: str) -> LockCapability:
    """The stored capabilities, or the provider's defaults when none were stored yet."""
    if not isinstance(names, list) or not names:
        return DEFAULT_CAPABILITIES.get(provider, LockCapability.NONE)
    result = LockCapability.NONE
    for name in names:
        if isinstance(name, str) and name in LockCapability.__members__:
            result |= LockCapability[name]
    return result


def constraints_to_json(constraints: CodeConstraints) -> dict[str, object]:
    return {
        "lengths": list(constraints.lengths),
        "no_zeros": constraints.no_zeros,
        "cannot_start_with_12": constraints.cannot_start_with_12,
        "no_triple_consecutive": constraints.no_triple_consecutive,
        "min_unique_digits": constraints.min_unique_digits,
        "missing_digits": sorted(constraints.missing_digits),
        "max_active_codes": constraints.max_active_codes,
        "unique_first_four_digits": constraints.unique_first_four_digits,
        "unknown_rules": list(constraints.unknown_rules),
        "lock_chooses_pin": constraints.lock_chooses_pin,
    }


def constraints_from_json(data: object) -> CodeConstraints:
    if not isinstance(data, dict) or not data.get("lengths"):
        return CONSERVATIVE_CONSTRAINTS
    max_active = data.get("max_active_codes")
    return CodeConstraints(
        lengths=tuple(int(n) for n in data["lengths"]),
        no_zeros=bool(data.get("no_zeros")),
        cannot_start_with_12=bool(data.get("cannot_start_with_12")),
        no_triple_consecutive=bool(data.get("no_triple_consecutive")),
        min_unique_digits=int(data.get("min_unique_digits") or 0),
        missing_digits=frozenset(str(d) for d in data.get("missing_digits") or ()),
        max_active_codes=int(max_active) if max_active is not None else None,
        unique_first_four_digits=bool(data.get("unique_first_four_digits")),
        unknown_rules=tuple(str(r) for r in data.get("unknown_rules") or ()),
        lock_chooses_pin=bool(data.get("lock_chooses_pin")),
    )
