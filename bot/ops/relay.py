"""What a renter sends while a person has the conversation, shown to the staff: the
``handoff.to_staff`` executor.

It goes to the conversation's forum topic in the ops group; without a topic, to the private chat
of the staff member who has the conversation (or to the ops group while nobody has taken it yet),
with the ``/reply`` line to answer. Photos travel too: a Telegram renter's by file id, an SMS or
WhatsApp renter's fetched through their channel and uploaded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from flows.booking import MediaFetcher
from flows.handoff import OPS_LANGUAGE, Handoff
from storage.models import Conversation, Message, OutboxEffect
from storage.outbox import record_progress
from storage.sealing import Sealer

if TYPE_CHECKING:  # Telegram's library is loaded only where Telegram is configured
    from bot.ops.chat import OpsChat

log = logging.getLogger(__name__)

TELEGRAM_FILE = "telegram-file:"
#: How many of a relay's sends (its photos, then its text) went out on earlier attempts.
SENT_PARTS = "sent_parts"


class StaffRelay:
    """With ``chat`` None (no Telegram configured) it does nothing: the sandbox page shows the
    conversation's messages."""

    def __init__(
        self,
        chat: OpsChat | None,
        chat_id: int | None,
        handoff: Handoff,
        fetch_media: MediaFetcher,
        sealer: Sealer,
    ) -> None:
        self.chat = chat
        self.chat_id = chat_id
        self.handoff = handoff
        self.fetch_media = fetch_media
        self.sealer = sealer

    def t(self, key: str, **params: object) -> str:
        return self.handoff.translator.text(OPS_LANGUAGE, key, **params)

    async def __call__(self, effect: OutboxEffect) -> None:
        chat = self.chat
        if chat is None:
            return
        payload = effect.payload
        conversation = await Conversation.get(id=int(str(payload["conversation"])))
        agent = payload.get("agent")
        target, thread = self._where(conversation, agent if isinstance(agent, int) else None)
        if target is None:
            return
        if payload.get("notice"):
            await chat.send(target, str(payload["text"]), thread=thread)
            return
        who = await self.handoff.who(conversation)
        text = await self._words(conversation, payload)
        media = _pairs(payload.get("media"))
        parts: list[Callable[[], Awaitable[object]]] = []
        for url, _content_type in media:
            parts.append(partial(self._send_photo, chat, target, thread, who, payload, url))
        if text or not media:
            key = "ops.relay_in_topic" if thread is not None else "ops.relay"
            line = self.t(key, who=who, text=text or "-", ident=conversation.id)
            parts.append(partial(chat.send, target, line, thread=thread))
        # Each part that went out is noted at once: a retry after a later one failed sends
        # only what is left, so the staff never see a renter's photo twice.
        done = payload.get(SENT_PARTS, 0)
        for number, send in enumerate(parts, start=1):
            if isinstance(done, int) and number <= done:
                continue
            await send()
            if number < len(parts) and not await record_progress(effect, SENT_PARTS, number):
                return

    async def _send_photo(
        self,
        chat: OpsChat,
        target: int,
        thread: int | None,
        who: str,
        payload: dict[str, object],
        url: str,
    ) -> None:
        photo = await self._photo(str(payload.get("channel", "")), url)
        if photo is None:
            await chat.send(target, self.t("ops.relay_photo_refused", who=who), thread=thread)
        else:
            await chat.send_photo(target, photo, self.t("ops.relay_photo", who=who), thread=thread)

    async def _words(self, conversation: Conversation, payload: dict[str, object]) -> str:
        """What the renter wrote: the stored inbound message, opened when it is sealed (it holds
        their PIN). Payloads staged before messages were read this way carry the text."""
        if "message" not in payload:
            return str(payload.get("text") or "")
        row = await Message.get_or_none(
            conversation_id=conversation.id, direction="in", provider_id=str(payload["message"])
        )
        if row is None or not row.body:
            return ""
        return self.sealer.open(row.body) if row.sealed else row.body

    def _where(
        self, conversation: Conversation, agent: int | None
    ) -> tuple[int | None, int | None]:
        """The conversation's topic; else the private chat of the member who has (or, for a
        notice about its release, had) it; else the ops group."""
        if conversation.agent_thread_id is not None and self.chat_id is not None:
            return self.chat_id, conversation.agent_thread_id
        agent = conversation.agent_id or agent
        if agent is not None:
            return agent, None
        return self.chat_id, None

    async def _photo(self, channel: str, url: str) -> bytes | str | None:
        if url.startswith(TELEGRAM_FILE):
            return url.removeprefix(TELEGRAM_FILE)  # the same bot sends it again by file id
        try:
            content, _ = await self.fetch_media(channel, url)
        except ValueError:
            log.info("a %s renter's picture could not be fetched for the staff", channel)
            return None
        return content


def _pairs(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return []
    return [(str(item[0]), str(item[1])) for item in value if isinstance(item, list | tuple)]
