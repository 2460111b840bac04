"""Locks and access codes: the LockProvider port and one subpackage per vendor."""

from locks.port import (
    PROVIDER_NAMES,
    CapabilityMissing,
    CodeConstraints,
    CodeRequest,
    CodeStatus,
    LockCapability,
    LockDevice,
    LockError,
    LockNotFound,
    LockProvider,
    LockRejected,
    LockUnavailable,
    ProgrammedCode,
    RejectionReason,
    UnlockResult,
    require,
)

__all__ = [
    "PROVIDER_NAMES",
    "CapabilityMissing",
    "CodeConstraints",
    "CodeRequest",
    "CodeStatus",
    "LockCapability",
    "LockDevice",
    "LockError",
    "LockNotFound",
    "LockProvider",
    "LockRejected",
    "LockUnavailable",
    "ProgrammedCode",
    "RejectionReason",
    "UnlockResult",
    "require",
]
