"""What a flow step asks for. The engine stores all of it in one transaction with the new state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.messages import Choice

if TYPE_CHECKING:
    from storage.models import OutboxEffect


@dataclass(frozen=True)
class Reply:
    """A message back to the renter, already rendered in their language."""

    text: str
    choices: tuple[Choice, ...] = ()
    kind: str = "reply"


@dataclass(frozen=True)
class Effect:
    """Work for the outbox dispatcher; ``key`` makes it idempotent across retries."""

    kind: str
    key: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    critical: bool = False


@dataclass(frozen=True)
class SetTimer:
    kind: str
    due_at: datetime
    key: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class Alert:
    kind: str
    group_key: str
    message_key: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Audit:
    actor: str
    action: str
    subject: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


#: A state change a handler asks for, made by the runner in the transaction that stores the
#: outcome; what it returns (effects that hold only if the change was made) is stored with it.
Write = Callable[[BaseDBAsyncClient], Awaitable["Outcome"]]


@dataclass
class Outcome:
    """Everything a step wants done besides changing the conversation's own state."""

    replies: list[Reply] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    timers: list[SetTimer | CancelTimer] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            replies=[*self.replies, *other.replies],
            effects=[*self.effects, *other.effects],
            timers=[*self.timers, *other.timers],
            alerts=[*self.alerts, *other.alerts],
            audits=[*self.audits, *other.audits],
            writes=[*self.writes, *other.writes],
        )


class Deferred(Exception):
    """Raised by an executor whose effect must wait its turn (a lock's pace, a provider's
    429) before any outside call that counts: the dispatcher puts it off to ``until`` as not
    attempted — no failure, no backoff, no alert — with ``notes`` added to its payload."""

    def __init__(self, until: datetime, reason: str, notes: Mapping[str, Any] | None = None):
        super().__init__(reason)
        self.until = until
        self.notes = dict(notes or {})


#: A handler as a runner calls it: given the unit of work, it returns what to change.
Handler = Callable[[BaseDBAsyncClient], Awaitable[Outcome]]

#: What an effect executor hands back after its outside call: the follow-up that records what
#: the call learnt. The dispatcher runs it in the unit of work that marks the effect done, so
#: the record and the effect's completion commit together (or neither does).
FollowUp = Handler

#: Runs one effect's outside call, outside any transaction; what the call learnt comes back as a
#: follow-up (or None when there is nothing to record), committed with the effect's completion.
EffectExecutor = Callable[["OutboxEffect"], Awaitable[FollowUp | None]]
