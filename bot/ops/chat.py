"""The Bot API calls the operators' side makes, through the renter channel's bot, with every
Telegram error turned into one of ours (``ChannelError``: the outbox retries; ``Undeliverable``:
it cannot help)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from telegram import (
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    MessageEntity,
    User,
)
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.channels import ChannelError, Undeliverable
from bot.transports.telegram import MESSAGE_TEXT_LIMIT, TelegramChannel

log = logging.getLogger(__name__)

Buttons = tuple[tuple[str, str], ...]  # (label, callback data), one per row
#: Photos in one album (``sendMediaGroup``): at least two, at most ten.
ALBUM_MIN, ALBUM_MAX = 2, 10
CAPTION_LIMIT = 1024


def keyboard(buttons: Buttons) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(label, callback_data=data)] for label, data in buttons]
    )


class OpsChat:
    def __init__(self, channel: TelegramChannel) -> None:
        self.channel = channel

    async def send(
        self,
        chat_id: int,
        text: str,
        buttons: Buttons = (),
        *,
        thread: int | None = None,
    ) -> int:
        try:
            sent: Message = await self.channel.bot.send_message(
                chat_id=chat_id,
                text=_fit(text),
                reply_markup=keyboard(buttons),
                message_thread_id=thread,
            )
        except TelegramError as err:
            raise _error(err, "sendMessage") from err
        return sent.message_id

    async def ask(
        self,
        chat_id: int,
        text: str,
        *,
        who: tuple[int, str],
        placeholder: str,
        thread: int | None = None,
    ) -> int:
        """Send a prompt the member answers by replying to it. ``text`` starts with their name
        (``who``: user id, name), marked as a mention so that in a group only they get the reply
        field."""
        user_id, name = who
        text = _fit(text)
        mention = []
        if text.startswith(name):
            length = len(name.encode("utf-16-le")) // 2  # Telegram counts UTF-16 code units
            user = User(id=user_id, first_name=name, is_bot=False)
            mention = [MessageEntity(MessageEntity.TEXT_MENTION, 0, length, user=user)]
        try:
            sent: Message = await self.channel.bot.send_message(
                chat_id=chat_id,
                text=text,
                entities=mention,
                reply_markup=ForceReply(selective=True, input_field_placeholder=placeholder[:64]),
                message_thread_id=thread,
            )
        except TelegramError as err:
            raise _error(err, "sendMessage") from err
        return sent.message_id

    async def edit(self, chat_id: int, message_id: int, text: str, buttons: Buttons = ()) -> None:
        try:
            await self.channel.bot.edit_message_text(
                chat_id=chat_id,
                message_id=message_id,
                text=_fit(text),
                reply_markup=keyboard(buttons),
            )
        except BadRequest as err:
            if "not modified" in err.message.lower():
                return  # already shows this
            raise _error(err, "editMessageText") from err
        except TelegramError as err:
            raise _error(err, "editMessageText") from err

    async def send_photo(
        self,
        chat_id: int,
        photo: bytes | str,
        caption: str,
        *,
        thread: int | None = None,
    ) -> int:
        """A photo as bytes (uploaded) or a Telegram file id (sent again by reference)."""
        try:
            sent: Message = await self.channel.bot.send_photo(
                chat_id=chat_id,
                photo=photo,
                caption=caption[:CAPTION_LIMIT],
                message_thread_id=thread,
            )
        except TelegramError as err:
            raise _error(err, "sendPhoto") from err
        return sent.message_id

    async def send_album(
        self,
        chat_id: int,
        photos: Sequence[tuple[bytes, str]],
        *,
        thread: int | None = None,
    ) -> list[int]:
        """Uploaded photos (image, caption) as one album; its messages' ids in order. An album
        carries no buttons."""
        if not ALBUM_MIN <= len(photos) <= ALBUM_MAX:
            raise ValueError(f"an album has {ALBUM_MIN}-{ALBUM_MAX} photos, not {len(photos)}")
        media = [
            InputMediaPhoto(image, caption=caption[:CAPTION_LIMIT]) for image, caption in photos
        ]
        try:
            sent = await self.channel.bot.send_media_group(
                chat_id=chat_id, media=media, message_thread_id=thread
            )
        except TelegramError as err:
            raise _error(err, "sendMediaGroup") from err
        return [message.message_id for message in sent]

    async def send_document(
        self,
        chat_id: int,
        document: bytes,
        filename: str,
        caption: str,
        *,
        thread: int | None = None,
    ) -> int:
        """A file Telegram shows as a document (a PDF: ``sendPhoto`` takes only images)."""
        try:
            sent: Message = await self.channel.bot.send_document(
                chat_id=chat_id,
                document=document,
                filename=filename,
                caption=caption[:CAPTION_LIMIT],
                message_thread_id=thread,
            )
        except TelegramError as err:
            raise _error(err, "sendDocument") from err
        return sent.message_id

    async def delete(self, chat_id: int, message_id: int) -> None:
        """Delete a message the bot sent; one already gone is not an error."""
        try:
            await self.channel.bot.delete_message(chat_id=chat_id, message_id=message_id)
        except BadRequest as err:
            if "not found" not in err.message.lower():
                raise _error(err, "deleteMessage") from err
        except TelegramError as err:
            raise _error(err, "deleteMessage") from err

    async def create_topic(self, chat_id: int, name: str) -> int | None:
        """A forum topic's thread id; None when the chat does not allow topics."""
        try:
            topic = await self.channel.bot.create_forum_topic(chat_id=chat_id, name=name[:128])
        except BadRequest as err:
            log.info("no forum topic in the ops chat: %s", err.message)
            return None
        except TelegramError as err:
            raise _error(err, "createForumTopic") from err
        return topic.message_thread_id

    async def answer(self, query_id: str) -> None:
        await self.channel.answer_callback(query_id)


def _fit(text: str) -> str:
    if len(text) <= MESSAGE_TEXT_LIMIT:
        return text
    return text[: MESSAGE_TEXT_LIMIT - 1] + "…"


def _error(err: TelegramError, method: str) -> ChannelError:
    if isinstance(err, Forbidden):
        return Undeliverable(f"Telegram {method}: {err.message}")
    if isinstance(err, BadRequest) and "not found" in err.message.lower():
        return Undeliverable(f"Telegram {method}: {err.message}")
    return ChannelError(f"Telegram {method} failed: {type(err).__name__}")
