"""What the operators' commands are, who may give them, and what they answer."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from flows.effects import Outcome
from flows.handoff import TakenOver
from storage.models import StaffMember, StaffRole
from storage.uow import UnitOfWork


class Permission(StrEnum):
    READ = "read"  # bookings, renters, locks, audit
    MANAGE = "manage"  # cancel, revoke, extend, retry
    ACCESS = "access"  # staff codes, remote opens
    TALK = "talk"  # take over and answer renters
    IDENTITY = "identity"  # approve or reject IDs
    ALERTS = "alerts"  # resolve alerts
    DEPOSITS = "deposits"  # claim a deposit for damage (/claim, a return report's button)
    GPS = "gps"  # where an item is (owner and manager only: nobody else sees GPS)


ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.OWNER: frozenset(Permission),
    StaffRole.MANAGER: frozenset(Permission),
    StaffRole.SUPPORT: frozenset(
        {Permission.READ, Permission.TALK, Permission.IDENTITY, Permission.ALERTS}
    ),
    StaffRole.MAINTENANCE: frozenset({Permission.ACCESS}),
}
MAX_STAFF_CODE_HOURS = 24 * 14
#: Hours or money as operators type them (``3``, ``1.5``, ``25,00``): ASCII digits, a few of them.
TYPED_AMOUNT = re.compile(r"[0-9]{1,9}(?:[.,][0-9]{1,2})?")
HISTORY = 15


@dataclass(frozen=True)
class CommandSpec:
    permission: Permission | None  # None: every staff member
    usage: str  # message key of the usage line
    least: int  # arguments at least
    most: int | None  # at most (None: the rest is one free text)


COMMANDS: dict[str, CommandSpec] = {
    "today": CommandSpec(Permission.READ, "ops.usage_today", 0, 1),
    "booking": CommandSpec(Permission.READ, "ops.usage_booking", 1, 1),
    "find": CommandSpec(Permission.READ, "ops.usage_find", 1, None),
    "cancel": CommandSpec(Permission.MANAGE, "ops.usage_cancel", 1, 2),
    "revoke": CommandSpec(Permission.MANAGE, "ops.usage_revoke", 1, 1),
    "extend": CommandSpec(Permission.MANAGE, "ops.usage_extend", 2, None),
    "open": CommandSpec(Permission.ACCESS, "ops.usage_open", 1, 1),
    "staffcode": CommandSpec(Permission.ACCESS, "ops.usage_staffcode", 2, None),
    "locks": CommandSpec(Permission.READ, "ops.usage_locks", 0, 1),
    "audit": CommandSpec(Permission.READ, "ops.usage_audit", 1, 1),
    "takeover": CommandSpec(Permission.TALK, "ops.usage_takeover", 1, 1),
    "release": CommandSpec(Permission.TALK, "ops.usage_release", 0, 1),
    "reply": CommandSpec(Permission.TALK, "ops.usage_reply", 2, None),
    "approve": CommandSpec(Permission.IDENTITY, "ops.usage_approve", 1, 1),
    "reject": CommandSpec(Permission.IDENTITY, "ops.usage_reject", 2, None),
    "claim": CommandSpec(Permission.DEPOSITS, "ops.usage_claim", 1, 2),
    "returned": CommandSpec(Permission.DEPOSITS, "ops.usage_returned", 1, 1),
    "where": CommandSpec(Permission.GPS, "ops.usage_where", 1, 1),
    "help": CommandSpec(None, "ops.usage_help", 0, 0),
}
#: Alert buttons: the action in the callback data and what it needs.
BUTTON_PERMISSIONS: dict[str, Permission] = {
    "approve": Permission.IDENTITY,
    "reject": Permission.IDENTITY,
    "take": Permission.TALK,
    "retry": Permission.MANAGE,
    "resolve": Permission.ALERTS,
    "damage": Permission.DEPOSITS,
}


@dataclass
class OpsAnswer:
    lines: list[str] = field(default_factory=list)
    #: Only for the asking staff member's eyes (a PIN): the glue sends them privately.
    private: list[str] = field(default_factory=list)
    #: A conversation just taken over: the glue gives it a forum topic where it can.
    taken: TakenOver | None = None
    #: The first line asks the member for a reason, which they give by replying to it.
    asks: ReasonAsked | None = None
    #: A deposit claim the member asked for: the runner makes it after the command commits,
    #: outside any transaction, and answers with what came of it (``OpsDesk.claim``).
    claim: DepositClaim | None = None
    #: A position Traccar is asked for: the runner asks after the command commits, outside any
    #: transaction, and answers with it (``OpsDesk.where_now``).
    position: PositionAsked | None = None
    #: What the command changes besides what it wrote through the unit of work: the runner
    #: stores it (effects, timers, alerts, audits) when it commits.
    outcome: Outcome = field(default_factory=Outcome)


@dataclass(frozen=True)
class ReasonAsked:
    """A prompt the member answers by replying to it (Telegram's ForceReply). It starts with
    ``who``, the member's name, so that in a group only they get the reply field."""

    who: str
    placeholder: str


@dataclass(frozen=True)
class DepositClaim:
    """Keep ``amount`` (minor units; None: all of it) of the booking's deposit."""

    reference: str
    amount: int | None
    currency: str
    actor: str


@dataclass(frozen=True)
class PositionAsked:
    """Where the item ``asset`` is now, as Traccar has it, asked by ``actor``."""

    asset: str
    actor: str


@dataclass(frozen=True)
class Context:
    """Where a command was given: the conversation whose forum topic it was written in."""

    conversation_id: int | None = None


class BadArguments(Exception):
    """A bad argument: answer with the command's usage, change nothing."""


class Refused(Exception):
    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


Handler = Callable[[UnitOfWork, StaffMember, list[str], Context], Awaitable[OpsAnswer]]
