"""The names the access-code lifecycle persists (timer and effect kinds, their keys) and the
timers and effects built from them."""

from __future__ import annotations

from datetime import datetime

from flows.effects import Effect, SetTimer
from storage.kinds import EffectKind, TimerKind
from storage.models import AccessCodeState
from storage.removals import REMOVAL_CHECK_TIMER, REMOVE_EFFECT, removal_check_key

__all__ = [
    "CODE_NOT_MOVED_TIMER",
    "CODE_OFF_TOLD",
    "CODE_REMOVED_TIMER",
    "CODE_SET_TIMER",
    "CONFIRM_TIMER",
    "DEADLINE_TIMER",
    "LAPSES",
    "LIVE_STATES",
    "PIN_RULES_UNKNOWN",
    "PROGRAM_TIMER",
    "RECONCILE_KEY",
    "RECONCILE_TIMER",
    "REMOVAL_CHECK_TIMER",
    "REMOVE_EFFECT",
    "REVOKE_TIMER",
    "SET_EFFECT",
    "UPDATE_EFFECT",
    "confirm_key",
    "deadline_key",
    "program_key",
    "removal_check_key",
    "remove_again",
    "remove_effect",
    "revoke_key",
    "revoke_timer",
    "set_effect",
]

LIVE_STATES = (AccessCodeState.PENDING, AccessCodeState.PROGRAMMING, AccessCodeState.SET)
PROGRAM_TIMER = TimerKind.ACCESS_PROGRAM
DEADLINE_TIMER = TimerKind.ACCESS_DEADLINE
CONFIRM_TIMER = TimerKind.ACCESS_CONFIRM
#: Fired at once when a booking's code becomes set: the journey sends a PIN that is due.
CODE_SET_TIMER = TimerKind.ACCESS_CODE_SET
#: Fired when a booking's code is proved off its lock: a renter whose booking was cancelled is
#: told, once every code of it is off, that their code no longer works.
CODE_REMOVED_TIMER = TimerKind.ACCESS_CODE_REMOVED
#: The audit that records that the renter was told so (once per booking).
CODE_OFF_TOLD = "access.renter_told_code_off"
#: Why an offline code is marked removed though it still works until its end.
LAPSES = "cannot be revoked remotely; lapses by itself"
#: Fired when a lock refuses to move a booking's code to its new window.
CODE_NOT_MOVED_TIMER = TimerKind.ACCESS_CODE_NOT_MOVED
REVOKE_TIMER = TimerKind.ACCESS_REVOKE
RECONCILE_TIMER = TimerKind.ACCESS_RECONCILE
RECONCILE_KEY = "access:reconcile"
SET_EFFECT = EffectKind.ACCESS_SET
#: Why a code on a lock with PIN rules Keyturn does not know was refused.
PIN_RULES_UNKNOWN = "unknown PIN rules: Keyturn may not choose a PIN for this lock"
UPDATE_EFFECT = EffectKind.ACCESS_UPDATE


def confirm_key(code_id: int) -> str:
    return f"access:confirm:{code_id}"


def deadline_key(code_id: int) -> str:
    return f"access:deadline:{code_id}"


def program_key(code_id: int) -> str:
    return f"access:program:{code_id}"


def revoke_key(code_id: int) -> str:
    return f"access:revoke:{code_id}"


def revoke_timer(code_id: int, ends_at: datetime) -> SetTimer:
    """The code is revoked when its window ends."""
    return SetTimer(REVOKE_TIMER, ends_at, revoke_key(code_id), {"code": code_id})


def set_effect(code_id: int, key: str | None = None, *, fresh: bool = False) -> Effect:
    """Program the code (with a fresh PIN first, where ``fresh``)."""
    payload: dict[str, object] = {"code": code_id}
    if fresh:
        payload["fresh"] = True
    return Effect(SET_EFFECT, key or f"access:set:{code_id}", payload)


def remove_effect(code_id: int) -> Effect:
    return Effect(REMOVE_EFFECT, f"access:remove:{code_id}", {"code": code_id}, critical=True)


def remove_again(code_id: int, why: str, now: datetime, *, ref: str | None = None) -> Effect:
    """A removal queued again for a code whose earlier one was lost or did not take; ``ref``
    names a code made on the lock after its removal (its create answered late)."""
    key = f"access:remove:{code_id}:{why}:{now.isoformat()}"
    payload: dict[str, object] = {"code": code_id}
    if ref is not None:
        payload["ref"] = ref
    return Effect(REMOVE_EFFECT, key, payload, critical=True)
