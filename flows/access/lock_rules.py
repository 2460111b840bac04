"""What a lock lets Keyturn do with a code: who chooses its PIN, whether it takes an offline
backup, how a code found on it is recognised, and the alerts about a lock refusing one."""

from __future__ import annotations

from flows.effects import Alert
from locks import CodeConstraints, CodeRequest, LockCapability, ProgrammedCode
from locks.port import capabilities_from_json, constraints_from_json
from storage.kinds import AlertKind
from storage.models import AccessCode, Lock


def computes_own_pin(lock: Lock) -> bool:
    """Locks that only take offline, algorithmic codes choose their PIN themselves."""
    capabilities = capabilities_from_json(lock.capabilities, lock.provider)
    return LockCapability.OFFLINE_CODES in capabilities and lock.provider == "igloohome"


def lock_sets_pin(lock: Lock) -> bool:
    """A Seam lock whose PIN Keyturn must not choose (a rule it does not know, or the lock sets
    its own): Seam generates one that meets the lock's rules when asked without a PIN."""
    constraints = constraints_from_json(lock.code_constraints)
    return lock.provider == "seam" and not constraints.keyturn_may_choose


def may_choose_pin(lock: Lock) -> bool:
    """Keyturn knows every PIN rule of the lock and may choose one."""
    return constraints_from_json(lock.code_constraints).keyturn_may_choose


def takes_offline_backup(lock: Lock, code: AccessCode) -> bool:
    """A lock that takes online codes and can also be given an offline one."""
    capabilities = capabilities_from_json(lock.capabilities, lock.provider)
    return (
        LockCapability.OFFLINE_CODES in capabilities
        and not computes_own_pin(lock)
        and not code.offline
    )


def same_code(programmed: ProgrammedCode, request: CodeRequest) -> bool:
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


def rejected_alert(lock: Lock, reason: str) -> Alert:
    """Ops hear that a lock refused a code (to set it, or to move it to a new window)."""
    return Alert(
        AlertKind.CODE_REJECTED,
        f"code-rejected:{lock.key}",
        "ops.code_rejected",
        {"lock": lock.label, "reason": reason},
    )


def pin_rules_alert(lock: Lock, constraints: CodeConstraints) -> Alert:
    """Ops hear that Keyturn may not choose a PIN for a lock whose rules it does not know."""
    rules = ", ".join(constraints.unknown_rules) or "the lock sets its own PINs"
    return Alert(
        AlertKind.PIN_RULES_UNKNOWN,
        f"pin-rules-unknown:{lock.key}",
        "ops.pin_rules_unknown",
        {"lock": lock.label, "rules": rules},
    )
