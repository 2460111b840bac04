"""Support hand-off: a person takes a renter's conversation over from the bot, and gives it back.

A conversation is with a person when ``Conversation.agent_id`` names a staff member, and waiting
for one when the renter asked (AGENT, or the dialog failed to understand them several times in a
row). Meanwhile the bot does not answer the renter: what they send is relayed to the staff through
the outbox (``handoff.to_staff``), and what the staff write reaches the renter's channel as an
ordinary ``send_message`` effect. Messages Keyturn sends on its own (the PIN, receipts) still go
out through the Notifier. STOP and START are always the bot's to answer.

A durable timer hands an idle conversation back to the bot; every message either way moves it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.clock import Clock
from flows.digits import DATABASE_ID_MAX, typed_int
from flows.effects import Alert, Audit, CancelTimer, Effect, Outcome, Reply, SetTimer
from flows.engine import Dialog, StepResult, Turn
from flows.i18n import Translator, fold, keyword_map, renter_language
from flows.messages import Media
from flows.outbound import Outgoing, stage_message
from flows.timers import TimerFired, TimerHandler
from storage.columns import fits_column
from storage.conversations import REQUESTED, Handling, handling, move_handling
from storage.journal import resolve_alert
from storage.kinds import AlertKind, EffectKind, TimerKind
from storage.models import Booking, Conversation, Message, Renter, StaffMember
from storage.sealing import Sealer
from storage.uow import UnitOfWork

IDLE_TIMER = TimerKind.HANDOFF_IDLE
#: Relays a renter's message (or a notice about the conversation) to the staff.
TO_STAFF_EFFECT = EffectKind.HANDOFF_TO_STAFF
#: Operators' texts are rendered in this language (the ops group's).
OPS_LANGUAGE = "en"
_ALWAYS_THE_BOTS = {"stop": "keyword.stop", "start": "keyword.start"}


@dataclass(frozen=True)
class HandoffSettings:
    #: A conversation nobody wrote in for this long goes back to the bot.
    idle: timedelta = timedelta(minutes=30)
    #: How many recent messages the staff member sees on taking over.
    transcript: int = 10
    #: After this many answers in a row that the dialog did not understand, a person is asked.
    misunderstood: int = 3


class HandoffRefused(Exception):
    """The hand-off cannot be done; ``key`` and ``params`` say why, for the operator."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class TakenOver:
    conversation_id: int
    who: str
    channel: str
    #: The conversation's forum topic in the ops group, if it has one already.
    thread_id: int | None
    transcript: tuple[str, ...]


def idle_key(conversation_id: int) -> str:
    return f"handoff:{conversation_id}"


def agent_group(conversation_id: int) -> str:
    """The group key of the conversation's "renter asked for a person" alert."""
    return f"agent:{conversation_id}"


class Handoff:
    def __init__(
        self,
        translator: Translator,
        clock: Clock,
        settings: HandoffSettings | None = None,
        *,
        sealer: Sealer | None = None,
    ) -> None:
        self.translator = translator
        self.clock = clock
        self.settings = settings or HandoffSettings()
        #: Seals what must be sealed (a PIN) in what staff send, as everything Keyturn sends.
        self.sealer = sealer
        self._bots_words = keyword_map(translator, _ALWAYS_THE_BOTS)

    def timer_handlers(self) -> Mapping[str, TimerHandler]:
        """The hand-off's timers and what handles each."""
        return {IDLE_TIMER: self.on_idle}

    def dialog(self, inner: Dialog) -> HandoffDialog:
        """``inner`` as the renter's dialog, silent while a person has the conversation."""
        return HandoffDialog(self, inner)

    def ops_text(self, key: str, **params: object) -> str:
        return self.translator.text(OPS_LANGUAGE, key, **params)

    # -- finding conversations ----------------------------------------------------------------

    async def find(self, ident: str) -> Conversation | None:
        """A conversation by its number, the renter's phone, or one of the renter's bookings."""
        ident = ident.strip()
        number = typed_int(ident, at_most=DATABASE_ID_MAX)
        if number is not None:
            return await Conversation.get_or_none(id=number)
        renter: Renter | None = None
        if ident.startswith("+"):
            if fits_column(Renter, "phone", ident):
                renter = await Renter.get_or_none(phone=ident)
        elif fits_column(Booking, "reference", ident.upper()):  # "ß" is "SS" upper-cased
            booking = await Booking.get_or_none(reference=ident.upper())
            if booking is not None:
                renter = await Renter.get(id=booking.renter_id)
        if renter is None:
            return None
        return (
            await Conversation.filter(renter_id=renter.id)
            .order_by("-last_inbound_at", "-id")
            .first()
        )

    async def by_thread(self, thread_id: int) -> Conversation | None:
        return await Conversation.filter(agent_thread_id=thread_id).first()

    async def taken_by(self, staff: StaffMember) -> list[Conversation]:
        return await Conversation.filter(agent_id=staff.telegram_user_id).order_by("id")

    async def who(self, conversation: Conversation) -> str:
        renter = (
            await Renter.get_or_none(id=conversation.renter_id) if conversation.renter_id else None
        )
        name = renter.name if renter is not None and renter.name else ""
        return f"{name} ({conversation.address})" if name else conversation.address

    # -- staff actions ------------------------------------------------------------------------

    async def take_over(
        self, conn: UnitOfWork, conversation_id: int, staff: StaffMember
    ) -> tuple[TakenOver, Outcome]:
        """``staff`` takes the conversation over, in the caller's unit of work: what they are
        shown, and what the runner commits with it (the renter told, the idle timer)."""
        now = self.clock.now()
        actor = f"staff:{staff.telegram_user_id}"
        conversation = (
            await Conversation.filter(id=conversation_id).using_db(conn).select_for_update().first()
        )
        if conversation is None:
            raise HandoffRefused("ops.not_found", what=str(conversation_id))
        who = await self.who(conversation)
        if conversation.agent_id not in (None, staff.telegram_user_id):
            agent = await StaffMember.get_or_none(telegram_user_id=conversation.agent_id)
            raise HandoffRefused("ops.already_taken", who=who, agent=agent.name if agent else "?")
        with_bot = conversation.agent_id is None
        await move_handling(
            conn, conversation, Handling.TAKEN, agent_id=staff.telegram_user_id, at=now
        )
        outcome = Outcome(
            timers=[self._idle_timer(conversation.id, now)],
            audits=[Audit(actor, "conversation.taken_over", f"conversation:{conversation.id}")],
        )
        if with_bot:
            outcome.effects.append(
                await self._tell(
                    conn, conversation, "handoff.taken", now, name=staff.name.split()[0]
                )
            )
        await resolve_alert(conn, group_key=agent_group(conversation.id), now=now, by=staff.name)
        transcript = await self._transcript(conn, conversation.id)
        taken = TakenOver(
            conversation.id, who, conversation.channel, conversation.agent_thread_id, transcript
        )
        return taken, outcome

    async def set_thread(
        self, conn: UnitOfWork, conversation_id: int, thread_id: int
    ) -> int | None:
        """Record the forum topic just opened for a taken conversation, in the caller's unit of
        work, unless one was recorded meanwhile (an earlier take-over's): the conversation's
        topic after, the one its messages go to."""
        if await (
            Conversation.filter(id=conversation_id, agent_thread_id__isnull=True)
            .using_db(conn)
            .update(agent_thread_id=thread_id)
        ):
            return thread_id
        conversation = await Conversation.get(id=conversation_id, using_db=conn)
        thread: int | None = conversation.agent_thread_id
        return thread

    async def release(
        self, conn: UnitOfWork, conversation_id: int, *, by: str, tell_staff: bool = True
    ) -> Outcome | None:
        """Hand the conversation back to the bot in the caller's unit of work; the Outcome tells
        the renter (and, with ``tell_staff``, the conversation's thread). None when no person
        had it or was asked for."""
        now = self.clock.now()
        conversation = (
            await Conversation.filter(id=conversation_id).using_db(conn).select_for_update().first()
        )
        if conversation is None or handling(conversation) == Handling.BOT:
            return None
        agent = conversation.agent_id
        await move_handling(conn, conversation, Handling.BOT, at=now)
        who = await self.who(conversation)
        outcome = Outcome(
            effects=[await self._tell(conn, conversation, "handoff.released", now)],
            timers=[CancelTimer(idle_key(conversation.id))],
            audits=[Audit(by, "conversation.released", f"conversation:{conversation.id}")],
        )
        if tell_staff:
            outcome.effects.append(
                Effect(
                    TO_STAFF_EFFECT,
                    f"handoff:released:{conversation.id}:{now.isoformat()}",
                    {
                        "conversation": conversation.id,
                        "text": self.ops_text("ops.released", who=who),
                        "notice": True,
                        "agent": agent,
                    },
                )
            )
        await resolve_alert(conn, group_key=agent_group(conversation.id), now=now, by=by)
        return outcome

    async def staff_says(
        self,
        conn: UnitOfWork,
        conversation_id: int,
        staff: StaffMember,
        text: str,
        media: tuple[Media, ...] = (),
    ) -> Outcome:
        """What a staff member wrote (or a photo they posted, ``text`` its caption) goes to the
        renter on the renter's channel, when the caller's unit of work commits."""
        now = self.clock.now()
        text = text.strip()
        if not text and not media:
            raise HandoffRefused("ops.reply_empty")
        conversation = await Conversation.filter(id=conversation_id).using_db(conn).first()
        if conversation is None:
            raise HandoffRefused("ops.not_found", what=str(conversation_id))
        if conversation.agent_id != staff.telegram_user_id:
            raise HandoffRefused("ops.not_yours", who=await self.who(conversation))
        renter = (
            await Renter.filter(id=conversation.renter_id).using_db(conn).first()
            if conversation.renter_id
            else None
        )
        if renter is not None and renter.opted_out:
            raise HandoffRefused("ops.renter_opted_out", who=await self.who(conversation))
        effect = await self._send(conn, conversation, text, now, media)
        audit = Audit(
            f"staff:{staff.telegram_user_id}",
            "conversation.staff_message",
            f"conversation:{conversation.id}",
        )
        return Outcome(
            effects=[effect], timers=[self._idle_timer(conversation.id, now)], audits=[audit]
        )

    # -- the idle timer -----------------------------------------------------------------------

    async def on_idle(self, event: TimerFired) -> Outcome:
        """Hand an idle conversation back to the bot, in the timer runner's transaction."""
        conversation_id = int(str(event.payload["conversation"]))

        async def release(conn: UnitOfWork) -> Outcome:
            released = await self.release(conn, conversation_id, by="system:idle")
            return released or Outcome()

        return Outcome(writes=[release])

    def _idle_timer(self, conversation_id: int, now: datetime) -> SetTimer:
        return SetTimer(
            IDLE_TIMER,
            now + self.settings.idle,
            idle_key(conversation_id),
            {"conversation": conversation_id},
        )

    # -- helpers ------------------------------------------------------------------------------

    def hands_to_bot(self, text: str) -> bool:
        """STOP and START are answered by the bot even while a person has the conversation."""
        words = text.split()
        return bool(words) and fold(words[0]) in self._bots_words

    async def _transcript(self, conn: BaseDBAsyncClient, conversation_id: int) -> tuple[str, ...]:
        rows = (
            await Message.filter(conversation_id=conversation_id)
            .using_db(conn)
            .order_by("-id")
            .limit(self.settings.transcript)
        )
        lines = []
        for row in reversed(rows):
            if row.sealed:
                body = self.ops_text("ops.transcript_sealed")
            else:
                body = row.body or (self.ops_text("ops.transcript_photo") if row.media else "")
            key = "ops.transcript_in" if row.direction == "in" else "ops.transcript_out"
            lines.append(self.ops_text(key, at=row.created_at.strftime("%H:%M"), text=body))
        return tuple(lines)

    async def _tell(
        self,
        conn: BaseDBAsyncClient,
        conversation: Conversation,
        key: str,
        now: datetime,
        **params: object,
    ) -> Effect:
        renter = (
            await Renter.filter(id=conversation.renter_id).using_db(conn).first()
            if conversation.renter_id
            else None
        )
        language = renter_language(renter, conversation)
        return await self._send(
            conn, conversation, self.translator.text(language, key, **params), now
        )

    async def _send(
        self,
        conn: BaseDBAsyncClient,
        conversation: Conversation,
        text: str,
        now: datetime,
        media: tuple[Media, ...] = (),
    ) -> Effect:
        """A message to this very conversation (not the renter's latest one)."""
        message = Outgoing(conversation.channel, conversation.address, text, media=media)
        return await stage_message(conn, conversation.id, message, sealer=self.sealer, now=now)


class HandoffDialog:
    """Wraps the renter dialog: relays instead of answering while a person has the
    conversation, and asks for a person when the dialog keeps failing to understand."""

    def __init__(self, handoff: Handoff, inner: Dialog) -> None:
        self.handoff = handoff
        self.inner = inner

    async def step(self, turn: Turn) -> StepResult:
        with_person = turn.agent_id is not None or turn.data.get("handoff") == REQUESTED
        if with_person and not self.handoff.hands_to_bot(turn.text):
            return self._relay(turn)
        result = await self.inner.step(turn)
        return self._after(turn, result)

    def _relay(self, turn: Turn) -> StepResult:
        message = turn.message
        # The words are read from the stored message when relayed, not copied here: a message
        # that holds the renter's PIN is stored sealed, and the effect keeps no clear copy.
        payload: dict[str, Any] = {
            "conversation": turn.conversation_id,
            "message": message.provider_id,
            "media": [[m.url, m.content_type] for m in message.media],
            "channel": message.channel,
        }
        outcome = Outcome(
            effects=[
                Effect(TO_STAFF_EFFECT, f"relay:{message.channel}:{message.provider_id}", payload)
            ],
        )
        if turn.agent_id is not None:
            outcome.timers.append(self._idle(turn))
        return StepResult(turn.state, dict(turn.data), outcome)

    def _idle(self, turn: Turn) -> SetTimer:
        return SetTimer(
            IDLE_TIMER,
            turn.now + self.handoff.settings.idle,
            idle_key(turn.conversation_id),
            {"conversation": turn.conversation_id},
        )

    def _after(self, turn: Turn, result: StepResult) -> StepResult:
        data: dict[str, Any] = result.data
        if data.get("handoff") == REQUESTED and turn.data.get("handoff") != REQUESTED:
            result.outcome.timers.append(self._idle(turn))
            return result
        # The bot cannot help when it says it did not understand, or gives the same answer
        # again without getting anywhere, several times in a row. A turn that did what was asked
        # (a door opened, the PIN sent again) got somewhere, however often it is asked.
        replies = result.outcome.replies
        answer = _fingerprint(replies[0].text) if len(replies) == 1 else ""
        acted = (
            result.apply is not None
            or bool(result.outcome.effects or result.outcome.writes)
            or any(reply.kind == "pin" for reply in replies)
        )
        # A step that says it did not understand counts at once; the same answer given again
        # counts from its first time.
        repeated = bool(
            answer
            and not acted
            and answer == turn.data.get("last_answer")
            and result.state == turn.state
        )
        if result.understood and not repeated:
            data.pop("misunderstood", None)
            data.pop("last_answer", None)
            if answer and result.state == turn.state:
                data["last_answer"] = answer
            return result
        before = _count(turn.data.get("misunderstood"))
        count = before + 1 if before or not result.understood else 2
        if count < self.handoff.settings.misunderstood:
            data["misunderstood"] = count
            data["last_answer"] = answer
            return result
        # The bot cannot help: ask a person, as if the renter had sent AGENT.
        data.pop("misunderstood", None)
        data.pop("last_answer", None)
        data["handoff"] = REQUESTED
        result.outcome.replies = [Reply(turn.t("journey.agent_requested"))]
        result.outcome.alerts.append(
            Alert(
                AlertKind.AGENT_REQUESTED,
                agent_group(turn.conversation_id),
                "ops.agent_stuck",
                {"channel": turn.message.channel, "conversation": turn.conversation_id},
            )
        )
        result.outcome.audits.append(
            Audit(f"renter:{turn.renter_id}", "conversation.agent_requested", "dialog stuck")
        )
        result.outcome.timers.append(self._idle(turn))
        return result


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


__all__ = [
    "IDLE_TIMER",
    "TO_STAFF_EFFECT",
    "Handoff",
    "HandoffDialog",
    "HandoffRefused",
    "HandoffSettings",
    "TakenOver",
]
