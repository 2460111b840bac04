"""The conversation engine: one renter turn at a time per address, state and effects in one commit.

A turn reads the conversation and its renter (one query), runs the dialog step outside any
transaction (steps only read and return what they want done), then commits the new state, the
inbound and outbound messages, and every effect in ONE transaction. The commit is conditional on
the conversation's version, so a turn raced by another worker is recomputed instead of
overwriting it. Inside one process, turns of one address are serialized by a lock and turns of
different addresses run concurrently.

A message is recognised as seen before by the unique ``(provider, event_id)`` row its turn
inserts first: a re-delivery's commit fails on it and the turn is dropped. Checking beforehand
would cost every turn a query for the rare retry; only messages with media are checked first,
so a retried photo is not downloaded again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from flows.clock import Clock
from flows.effects import Outcome, SetTimer
from flows.i18n import Translator, renter_language
from flows.inbound_pins import holds_own_pin
from flows.messages import InboundMessage
from flows.outbound import SEND_EFFECT, Outgoing, prepare_messages, stage_messages
from flows.staging import stage_outcome
from storage.conversations import (
    NewMessage,
    add_conversation,
    add_renter,
    find_or_add_renter,
    forget_renter,
    read_conversation,
    save_answered_turn,
    save_turn,
    saves_answered_turns,
)
from storage.models import Conversation, EffectState, ProcessedWebhook, Renter
from storage.sealing import Sealer
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

#: Longer texts are cut before they are stored or parsed (10 concatenated SMS segments).
MAX_TEXT_LENGTH = 1600
PHONE_CHANNELS = frozenset({"sms", "whatsapp"})
#: Anyone on the sandbox page may type any phone number as their address, so a sandbox
#: conversation never resolves to the renter of that number on a real channel (their bookings,
#: PIN and conversation): each has a renter of its own, known only through it.
SANDBOX_CHANNEL = "sandbox"


@dataclass(frozen=True)
class Turn:
    """What a dialog step sees of one inbound message."""

    message: InboundMessage
    text: str
    state: str
    data: Mapping[str, Any]
    language: str
    renter_id: int
    now: datetime
    translator: Translator
    opted_out: bool = False
    conversation_id: int = 0
    #: The staff member who has taken the conversation over, if any.
    agent_id: int | None = None

    def t(self, key: str, **params: object) -> str:
        return self.translator.text(self.language, key, **params)


Apply = Callable[[BaseDBAsyncClient], Awaitable[Outcome]]


@dataclass
class StepResult:
    state: str
    data: dict[str, Any]
    outcome: Outcome = field(default_factory=Outcome)
    #: Set when the renter chose a language: it is remembered for every later message.
    language: str | None = None
    #: Domain writes (a booking hold, an opt-out) committed in the turn's transaction. If the
    #: database refuses them (the slot was just taken), the turn is recomputed.
    apply: Apply | None = None
    #: False when the step did not understand the message (it asked again, or said so): what
    #: the hand-off counts before it offers a person.
    understood: bool = True


class Dialog(Protocol):
    async def step(self, turn: Turn) -> StepResult: ...


class TurnResult(StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"


class _Raced(Exception):
    """Another worker committed a turn of this conversation first."""


class ReadChanged(Exception):
    """Raised by a step's ``apply``: what the step decided on changed before its turn could
    commit (another conversation's turn committed first); the turn is recomputed."""


def _answers_only(result: StepResult) -> bool:
    """A step that changes nothing but the conversation and answers (most turns)."""
    outcome = result.outcome
    return (
        result.apply is None
        and result.language is None
        and not (outcome.effects or outcome.timers or outcome.alerts)
        and not (outcome.audits or outcome.writes)
    )


def _earliest_timer(outcome: Outcome) -> datetime | None:
    dues = [timer.due_at for timer in outcome.timers if isinstance(timer, SetTimer)]
    return min(dues, default=None)


class _AddressLocks:
    """One asyncio.Lock per address, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> Any:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._locks)


class ConversationEngine:
    def __init__(
        self,
        dialog: Dialog,
        translator: Translator,
        clock: Clock,
        *,
        #: Called after each committed turn with the earliest timer it set, if any.
        on_commit: Callable[[datetime | None], None] | None = None,
        on_turn: Callable[[InboundMessage, TurnResult, float], None] | None = None,
        #: Called with the error when a turn fails (the database cannot write...) before it
        #: is raised to the caller: nothing of the turn was stored.
        on_failure: Callable[[InboundMessage, Exception], None] | None = None,
        max_attempts: int = 5,
        sealer: Sealer | None = None,
        max_concurrent_turns: int = 16,
    ) -> None:
        self.dialog = dialog
        self.translator = translator
        self.clock = clock
        self.on_commit = on_commit
        self.on_turn = on_turn
        self.on_failure = on_failure
        self.sealer = sealer
        self.max_attempts = max_attempts
        self._locks = _AddressLocks()
        #: Turns running at once in this process. Past it, webhooks wait their turn holding no
        #: connection, so under a flood the outbox still gets connections and replies keep
        #: going out, and memory stays bounded by the turns running rather than those waiting.
        self._slots = asyncio.Semaphore(max_concurrent_turns)

    async def handle(self, message: InboundMessage) -> TurnResult:
        """Run one renter turn; a message seen before (same provider id) is dropped."""
        started = time.perf_counter()
        try:
            result = await self._handle(message)
        except Exception as err:
            if self.on_failure is not None:
                self.on_failure(message, err)
            raise
        if self.on_turn is not None:
            self.on_turn(message, result, time.perf_counter() - started)
        return result

    async def _handle(self, message: InboundMessage) -> TurnResult:
        dedupe_provider = f"msg:{message.channel}"
        async with self._locks.hold((message.channel, message.address)), self._slots:
            for _attempt in range(self.max_attempts):
                if message.media and await self._seen(dedupe_provider, message):
                    return TurnResult.DUPLICATE
                try:
                    outcome = await self._turn(message, dedupe_provider)
                except (_Raced, ReadChanged, IntegrityError) as err:
                    if isinstance(err, IntegrityError) and await self._seen(
                        dedupe_provider, message
                    ):
                        return TurnResult.DUPLICATE
                    log.info(
                        "turn for a %s conversation raced (%s); recomputing",
                        message.channel,
                        type(err).__name__,
                    )
                    continue
                if self.on_commit is not None:
                    self.on_commit(_earliest_timer(outcome))
                return TurnResult.HANDLED
        raise RuntimeError(f"turn on {message.channel} kept racing; giving up")

    @staticmethod
    async def _seen(dedupe_provider: str, message: InboundMessage) -> bool:
        return await ProcessedWebhook.exists(provider=dedupe_provider, event_id=message.provider_id)

    async def _turn(self, message: InboundMessage, dedupe_provider: str) -> Outcome:
        now = self.clock.now()
        conversation, renter = await self._conversation(message)
        language = renter_language(
            renter,
            hint=message.language_hint,
            # A sandbox address is a phone number too, only not the renter's own.
            phone=message.address if message.channel == SANDBOX_CHANNEL else None,
        )
        text = message.text.strip()[:MAX_TEXT_LENGTH]
        turn = Turn(
            message=message,
            text=text,
            state=conversation.state,
            data=dict(conversation.data),
            language=language,
            renter_id=renter.id,
            now=now,
            translator=self.translator,
            opted_out=renter.opted_out,
            conversation_id=conversation.id,
            agent_id=conversation.agent_id,
        )
        result = await self.dialog.step(turn)
        inbound = await self._inbound_row(message, text, renter.id)
        claim = (dedupe_provider, message.provider_id)
        return await self._store(
            message, conversation, renter.id, language, result, inbound, claim, now
        )

    async def _inbound_row(self, message: InboundMessage, text: str, renter_id: int) -> NewMessage:
        """The inbound message's row, sealed when it holds the renter's own PIN."""
        sealed = self.sealer is not None and await holds_own_pin(renter_id, text, self.sealer)
        return NewMessage(
            direction="in",
            body=self.sealer.seal(text) if sealed and self.sealer else text,
            status="received",
            created_at=message.received_at,
            media=[{"url": m.url, "content_type": m.content_type} for m in message.media],
            sealed=sealed,
            provider_id=message.provider_id,
        )

    async def _store(
        self,
        message: InboundMessage,
        conversation: Conversation,
        renter_id: int,
        language: str,
        result: StepResult,
        inbound: NewMessage,
        claim: tuple[str, str],
        now: datetime,
    ) -> Outcome:
        """Commit the turn: its state, messages and everything its outcome asks for."""
        if _answers_only(result) and saves_answered_turns():
            # Nothing but the state and the replies: one statement, atomic by itself.
            if not await save_answered_turn(
                conversation,
                state=result.state,
                data=result.data,
                language=language,
                renter_id=renter_id,
                at=now,
                claim=claim,
                inbound=inbound,
                replies=prepare_messages(
                    self._replies(message, result.outcome), sealer=self.sealer, now=now
                ),
                send_kind=SEND_EFFECT,
                pending=EffectState.PENDING.value,
            ):
                raise _Raced()
            return result.outcome
        async with unit_of_work() as conn:
            saved = await save_turn(
                conn,
                conversation,
                state=result.state,
                data=result.data,
                language=result.language or language,
                renter_id=renter_id,
                at=now,
                claim=claim,
            )
            if not saved:
                raise _Raced()
            if result.language:
                await Renter.filter(id=renter_id).using_db(conn).update(language=result.language)
            outcome = result.outcome
            if result.apply is not None:
                outcome += await result.apply(conn)
            outcome.effects += await stage_messages(
                conn,
                conversation.id,
                self._replies(message, outcome),
                sealer=self.sealer,
                now=now,
                inbound=inbound,
            )
            await stage_outcome(conn, outcome, now)
        return outcome

    @staticmethod
    def _replies(message: InboundMessage, outcome: Outcome) -> list[Outgoing]:
        return [
            Outgoing(message.channel, message.address, reply.text, reply.kind, reply.choices)
            for reply in outcome.replies
        ]

    async def _conversation(self, message: InboundMessage) -> tuple[Conversation, Renter]:
        found = await read_conversation(message.channel, message.address)
        if found is not None and found[1] is not None:
            return found[0], found[1]
        renter = await self._renter(message)
        if found is not None:
            return found[0], renter
        conversation = await add_conversation(
            message.channel, message.address, renter.id, at=self.clock.now()
        )
        if conversation is None:
            if message.channel == SANDBOX_CHANNEL:
                await forget_renter(renter.id)  # the conversation that won has its own
            raise _Raced()  # another worker's first turn with this address started it
        return conversation, renter

    async def _renter(self, message: InboundMessage) -> Renter:
        name = message.display_name or ""
        if message.channel == SANDBOX_CHANNEL:
            return await add_renter(name=name, at=self.clock.now())
        if message.channel in PHONE_CHANNELS:
            return await find_or_add_renter(phone=message.address, name=name, at=self.clock.now())
        return await find_or_add_renter(
            telegram_id=int(message.address), name=name, at=self.clock.now()
        )
