"""Posts a pickup's or return's condition report in the ops group: the
``ops.condition_report`` executor.

The report goes to the renter's forum topic: the one their conversation has, or one opened for
it the way a take-over opens it when the group is a forum (and kept on the conversation, so the
hand-off later writes there too); in a group without topics, to the group. The photos come
first, unsealed and uploaded as one album (several of at most ten where there are more; a lone
photo on its own), each captioned with its prompt; then the report's text with a return's
"Damage?" button, which an album cannot carry. Each part is noted on the effect as soon as it
went out: a retried effect sends only what had not gone out, never a part twice. The text's
message id is kept on the effect, so that when the deposit is claimed or released
(``ops.condition_report_settled``) the report is edited to say so and loses its button. Photos
are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from bot.channels import Undeliverable
from flows.booking.handover_asks import condition_report_key
from flows.handoff import OPS_LANGUAGE, Handoff
from flows.i18n import Translator
from flows.ops import ConditionReport, ReportPhoto, condition_report, report_kind
from storage.models import Booking, Conversation, OutboxEffect
from storage.outbox import record_progress
from storage.rental_models import HandoverKind
from storage.sealing import Sealer
from storage.uow import unit_of_work

if TYPE_CHECKING:  # Telegram's library is loaded only where Telegram is configured
    from bot.ops.chat import Buttons, OpsChat

log = logging.getLogger(__name__)

#: What the report's parts that went out on earlier attempts are, in order: an album's message
#: ids, a lone photo's, then the text's.
SENT = "sent_messages"
#: The message id of the report's text (the one with the "Damage?" button).
REPORT_MESSAGE = "report_message"
#: Photos in one album at most (Telegram's ``sendMediaGroup`` takes 2-10).
ALBUM_MAX = 10


def albums(photos: list[ReportPhoto]) -> list[list[ReportPhoto]]:
    """The photos in as few albums as Telegram allows, of even sizes (eleven are six and five,
    never ten and a lone one); a single photo is a group of one."""
    if not photos:
        return []
    count = -(-len(photos) // ALBUM_MAX)
    size, extra = divmod(len(photos), count)
    groups, start = [], 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        groups.append(photos[start:end])
        start = end
    return groups


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
        shown = [photo for photo in report.photos if photo.sealed is not None]
        parts: list[Callable[[], Awaitable[object]]] = [
            partial(self._send_photos, chat, chat_id, thread, group) for group in albums(shown)
        ]
        parts.append(partial(self._send_text, chat, chat_id, thread, report))
        sent = effect.payload.get(SENT)
        done: list[object] = list(sent) if isinstance(sent, list) else []
        for number, send in enumerate(parts, start=1):
            if number <= len(done):
                continue
            done.append(await send())
            if not await record_progress(effect, SENT, done):
                return  # another worker took the effect over: it sends the rest
        await record_progress(effect, REPORT_MESSAGE, done[-1])

    async def settle(self, effect: OutboxEffect) -> None:
        """The ``ops.condition_report_settled`` executor: the return report posted before now
        says what became of the deposit, without the "Damage?" button. Nothing to do where it
        was not posted (no ops chat, not yet: it will be posted as it stands) or its message id
        is no longer kept."""
        chat, chat_id = self.chat, self.chat_id
        if chat is None or chat_id is None:
            return
        booking = await Booking.get_or_none(id=int(str(effect.payload["booking"])))
        if booking is None:
            return
        posted = await OutboxEffect.get_or_none(
            idempotency_key=condition_report_key(booking.reference, HandoverKind.RETURN)
        )
        message_id = posted.payload.get(REPORT_MESSAGE) if posted is not None else None
        if not isinstance(message_id, int):
            return
        report = await condition_report(self.translator, booking.id, HandoverKind.RETURN)
        if report is None:
            return
        try:
            await chat.edit(chat_id, message_id, report.text, _buttons(report))
        except Undeliverable as err:  # deleted from the group meanwhile: nothing left to edit
            log.info("the return report of %s was not edited: %s", booking.reference, err)

    async def _send_text(
        self, chat: OpsChat, chat_id: int, thread: int | None, report: ConditionReport
    ) -> int:
        return await chat.send(chat_id, report.text, _buttons(report), thread=thread)

    async def _send_photos(
        self, chat: OpsChat, chat_id: int, thread: int | None, photos: list[ReportPhoto]
    ) -> int | list[int]:
        images = [(self.sealer.open_bytes(p.sealed or ""), p.caption) for p in photos]
        if len(images) == 1:
            [(image, caption)] = images
            return await chat.send_photo(chat_id, image, caption, thread=thread)
        return await chat.send_album(chat_id, images, thread=thread)

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


def _buttons(report: ConditionReport) -> Buttons:
    if report.damage_button is None:
        return ()
    return ((report.damage_button, report.damage_data),)
