"""Locks and access codes: the LockProvider port and one subpackage per vendor."""

from locks.port import (
    PROVIDER_NAMES,
    CapabilityMissing,
    CodeConstraints,
    LockCapability,
    LockError,
    LockProvider,
    LockUnavailable,
    ProgrammedCode,
    require,
)

__all__ = [
    "PROVIDER_NAMES",
    "CapabilityMissing",
    "CodeConstraints",
    "LockCapability",
    "LockError",
    "LockProvider",
    "LockUnavailable",
    "ProgrammedCode",
    "require",
]
