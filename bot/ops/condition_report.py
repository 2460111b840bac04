"""Posts a pickup's or return's condition report in the ops group: the
``ops.condition_report`` executor.

The report goes to the renter's forum topic: the one their conversation has, or one opened for
it the way a take-over opens it when the group is a forum (and kept on the conversation, so the
hand-off later writes there too); in a group without topics, to the group. The report's text
comes first, with a return's "Damage?" button, then each photo, unsealed and uploaded with a
caption naming its prompt. Each message is noted on the effect as soon as it went out: a retried
effect sends only what had not gone out, never a part twice. Photos are never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from flows.handoff import OPS_LANGUAGE, Handoff
from flows.i18n import Translator
from flows.ops import ConditionReport, ReportPhoto, condition_report, report_kind
from storage.models import Booking, Conversation, OutboxEffect
from storage.outbox import record_progress
from storage.sealing import Sealer
from storage.uow import unit_of_work

if TYPE_CHECKING:  # Telegram's library is loaded only where Telegram is configured
    from bot.ops.chat import OpsChat

#: The message ids of the report's parts that went out on earlier attempts, in order.
SENT = "sent_messages"


class ConditionReporter:
    """With ``chat`` None (no Telegram or no ops chat) it does nothing: the sandbox's ops pane
    shows the reports."""

    def __init__(
        self,
        chat: OpsChat | None,
        chat_id: int | None,
        translator: Translator,
        sealer: Sealer,
        handoff: Handoff,
    ) -> None:
        self.chat = chat
        self.chat_id = chat_id
        self.translator = translator
        self.sealer = sealer
        self.handoff = handoff

    async def __call__(self, effect: OutboxEffect) -> None:
        chat, chat_id = self.chat, self.chat_id
        if chat is None or chat_id is None:
            return
        booking_id = int(str(effect.payload["booking"]))
        report = await condition_report(
            self.translator, booking_id, report_kind(effect.payload.get("kind"))
        )
        if report is None:
            return
        thread = await self._thread(chat, chat_id, booking_id)
        parts: list[Callable[[], Awaitable[int | None]]] = [
            partial(self._send_text, chat, chat_id, thread, report)
        ]
        parts += [
            partial(self._send_photo, chat, chat_id, thread, photo) for photo in report.photos
        ]
        sent = effect.payload.get(SENT)
        done: list[object] = list(sent) if isinstance(sent, list) else []
        for number, send in enumerate(parts, start=1):
            if number <= len(done):
                continue
            message_id = await send()
            done.append(message_id)
            if number < len(parts) and not await record_progress(effect, SENT, done):
                return  # another worker took the effect over: it sends the rest

    async def _send_text(
        self, chat: OpsChat, chat_id: int, thread: int | None, report: ConditionReport
    ) -> int:
        buttons: tuple[tuple[str, str], ...] = ()
        if report.damage_button is not None:
            buttons = ((report.damage_button, report.damage_data),)
        return await chat.send(chat_id, report.text, buttons, thread=thread)

    async def _send_photo(
        self, chat: OpsChat, chat_id: int, thread: int | None, photo: ReportPhoto
    ) -> int | None:
        if photo.sealed is None:
            return None  # deleted by retention before it could be shown
        image = self.sealer.open_bytes(photo.sealed)
        return await chat.send_photo(chat_id, image, photo.caption, thread=thread)

    async def _thread(self, chat: OpsChat, chat_id: int, booking_id: int) -> int | None:
        """The renter's forum topic; one opened now where the group allows topics; else None
        (the report goes to the group itself)."""
        booking = await Booking.get(id=booking_id)
        conversation = (
            await Conversation.filter(renter_id=booking.renter_id)
            .order_by("-last_inbound_at", "-id")
            .first()
        )
        if conversation is None:
            return None
        thread: int | None = conversation.agent_thread_id
        if thread is not None:
            return thread
        who = await self.handoff.who(conversation)
        name = self.translator.text(
            OPS_LANGUAGE, "ops.topic_name", who=who, channel=conversation.channel
        )
        topic = await chat.create_topic(chat_id, name)
        if topic is None:
            return None
        # Recorded at once, in its own unit of work: a retry (or the hand-off) finds the topic
        # instead of opening another.
        async with unit_of_work() as conn:
            return await self.handoff.set_thread(conn, conversation.id, topic)
