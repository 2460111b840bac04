"""The Telegram transport: renders ``OutboundMessage`` as Bot API messages with inline buttons,
turns private-chat updates into ``InboundMessage``, and fetches the photos renters send.

python-telegram-bot's ``Application`` is built with ``updater(None)``: updates arrive on our own
aiohttp route (``bot.transports.telegram_routes``), never by polling. The operators' group bot
reuses this channel (``application``, ``bot``, ``send_to``) for its own chats and topics.

Every Bot API error is turned into one of ours: a blocked bot or a chat that does not exist is
``Undeliverable`` (retrying cannot help); flood control, network trouble and timeouts are
``ChannelError`` so that the outbox retries. The bot token is part of every Bot API URL: httpx logs
those URLs at INFO and PTB its base URL at DEBUG, so the token is redacted in every log record
(``bot.log_redaction``), and our own messages never contain it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application

from bot.channels import ChannelError, Undeliverable
from bot.log_redaction import BOT_TOKEN_IN_TEXT, redact_secrets_in_logs
from flows.media_types import sniffed_type
from flows.messages import InboundMessage, Media, OutboundMessage

log = logging.getLogger(__name__)

CHANNEL = "telegram"
DEFAULT_API_BASE = "https://api.telegram.org"
#: ``Media.url`` of a file a renter sent: the Bot API ``file_id`` behind this prefix.
MEDIA_SCHEME = "telegram-file:"
#: Bot API limits: ``callback_data`` is 1-64 bytes, a message text 1-4096 characters.
CALLBACK_DATA_LIMIT = 64
MESSAGE_TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
#: What ``set_webhook`` subscribes to; the operators' bot may ask for more.
RENTER_UPDATES = ("message", "callback_query")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Bot API errors that mean the chat is gone for good (the text after PTB strips "Bad Request: ").
_GONE = ("chat not found", "user not found", "peer_id_invalid", "user is deactivated")
_SENT_MEMORY = 2048

TelegramApplication = Application[Any, Any, Any, Any, Any, Any]


class MediaRefused(ValueError):
    """A file a renter sent cannot be accepted: too large, not an image, or unknown to Telegram."""


class RateLimited(ChannelError):
    """Telegram's flood control answered 429; do not try again before ``retry_after``."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(
            f"Telegram flood control: retry after {retry_after.total_seconds():g} seconds"
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class TelegramTimeouts:
    """Seconds for each Bot API request (PTB's HTTPXRequest), and for a whole file download."""

    connect: float = 5.0
    read: float = 10.0
    write: float = 10.0
    pool: float = 2.0
    download: float = 60.0


def build_application(
    token: str, *, api_base: str = DEFAULT_API_BASE, timeouts: TelegramTimeouts | None = None
) -> TelegramApplication:
    """PTB's Application for webhook use, aimed at ``api_base`` (the Bot API root)."""
    timeouts = timeouts or TelegramTimeouts()
    api = api_base.rstrip("/")
    application: TelegramApplication = (
        Application.builder()
        .token(token)
        .updater(None)
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
        .write_timeout(timeouts.write)
        .media_write_timeout(max(timeouts.write, 20.0))
        .pool_timeout(timeouts.pool)
        .build()
    )
    return application


class TelegramChannel:
    """The ``telegram`` channel: chat ids as addresses, choices as inline buttons."""

    name = CHANNEL

    def __init__(
        self,
        token: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeouts: TelegramTimeouts | None = None,
    ) -> None:
        redact_secrets_in_logs([token])
        self.timeouts = timeouts or TelegramTimeouts()
        self.application = build_application(token, api_base=api_base, timeouts=self.timeouts)
        # Message ids of chunks already sent, by idempotency key: a retried effect whose send
        # went through (but whose bookkeeping failed) is not sent twice by this process.
        self._sent: OrderedDict[str, str] = OrderedDict()

    def __repr__(self) -> str:
        return "TelegramChannel()"

    @property
    def bot(self) -> Bot:
        bot: Bot = self.application.bot
        return bot

    async def start(self) -> None:
        """Initialize (calls getMe, so a wrong token fails here) and start the application."""
        try:
            await self.application.initialize()
        except TelegramError as err:
            await self.bot.shutdown()  # close the HTTP clients initialize opened
            if isinstance(err, InvalidToken):
                # PTB's message quotes the token: neither it nor its cause travels on.
                raise ChannelError(
                    "Telegram refused the bot token (check TELEGRAM_BOT_TOKEN)"
                ) from None
            raise _channel_error(err, "getMe") from err
        await self.application.start()
        log.info("telegram bot @%s is up", self.bot.username)

    async def stop(self) -> None:
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()

    async def set_webhook(
        self, url: str, secret: str, *, allowed_updates: tuple[str, ...] = RENTER_UPDATES
    ) -> None:
        """Ask Telegram to deliver updates to ``url`` with ``secret`` in the secret header."""
        check_webhook_secret(secret)
        try:
            await self.bot.set_webhook(
                url=url, secret_token=secret, allowed_updates=list(allowed_updates)
            )
        except TelegramError as err:
            raise _channel_error(err, "setWebhook") from err
        log.info("telegram webhook set to %s", url)

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        """Send ``message`` (split at 4096 characters, buttons on the last part); returns the
        Bot API message id of the last part."""
        chat_id = _chat_id(message.address)
        markup = inline_keyboard(message)
        if message.media:
            return await self._send_photos(chat_id, message, markup, idempotency_key)
        parts = split_text(message.text)
        provider_id = ""
        for index, part in enumerate(parts):
            key = f"{idempotency_key}#{index}"
            sent = self._sent.get(key)
            if sent is None:
                last = index == len(parts) - 1
                sent = await self.send_to(chat_id, part, markup if last else None)
                self._remember(key, sent)
            provider_id = sent
        return provider_id

    async def _send_photos(
        self,
        chat_id: int,
        message: OutboundMessage,
        markup: InlineKeyboardMarkup | None,
        idempotency_key: str,
    ) -> str:
        """Each photo (by the file id the bot already knows), the text as the last one's caption
        where it fits, else after them."""
        text = message.text.strip()
        caption = text if len(text) <= CAPTION_LIMIT else ""
        provider_id = ""
        for index, media in enumerate(message.media):
            key = f"{idempotency_key}#photo{index}"
            sent = self._sent.get(key)
            if sent is None:
                last = index == len(message.media) - 1
                try:
                    file_id = _file_id(media.url)
                except MediaRefused as err:
                    raise Undeliverable(str(err)) from err
                sent = await self._send_photo(
                    chat_id,
                    file_id,
                    caption if last else "",
                    markup if last and not (text and not caption) else None,
                )
                self._remember(key, sent)
            provider_id = sent
        if text and not caption:
            rest = OutboundMessage(message.channel, message.address, text, message.choices)
            provider_id = await self.send(rest, idempotency_key)
        return provider_id

    async def _send_photo(
        self, chat_id: int, file_id: str, caption: str, markup: InlineKeyboardMarkup | None
    ) -> str:
        try:
            sent: Message = await self.bot.send_photo(
                chat_id=chat_id, photo=file_id, caption=caption or None, reply_markup=markup
            )
        except TelegramError as err:
            raise _channel_error(err, "sendPhoto") from err
        return str(sent.message_id)

    async def send_to(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
        *,
        message_thread_id: int | None = None,
    ) -> str:
        """One sendMessage with our error mapping; also what the operators' bot sends with."""
        try:
            sent: Message = await self.bot.send_message(
                chat_id=chat_id,
                text=text,
                reply_markup=markup,
                message_thread_id=message_thread_id,
            )
        except TelegramError as err:
            raise _channel_error(err, "sendMessage") from err
        return str(sent.message_id)

    async def answer_callback(self, query_id: str) -> bool:
        """Stop the button's progress spinner; a query too old to answer is not an error."""
        try:
            return await self.bot.answer_callback_query(query_id)
        except TelegramError as err:
            log.info("callback query not answered: %s", _scrub(err.message))
            return False

    async def fetch_photo(self, media_url: str, *, max_bytes: int) -> tuple[bytes, str]:
        """Download a file a renter sent (``telegram-file:<file_id>``); returns bytes and type."""
        file_id = _file_id(media_url)
        try:
            async with asyncio.timeout(self.timeouts.download):
                file = await self.bot.get_file(file_id)
                if file.file_size is not None and file.file_size > max_bytes:
                    raise MediaRefused(f"file is {file.file_size} bytes; at most {max_bytes}")
                data = bytes(await file.download_as_bytearray())
        except TimeoutError as err:
            raise ChannelError("Telegram file download timed out") from err
        except BadRequest as err:  # "file is too big", "wrong file_id ..."
            raise MediaRefused(f"Telegram refused the file: {_scrub(err.message)}") from err
        except TelegramError as err:
            raise _channel_error(err, "getFile") from err
        if len(data) > max_bytes:
            raise MediaRefused(f"file is {len(data)} bytes; at most {max_bytes}")
        # Telegram's own mime types come from the sender: the type is read from the bytes.
        content_type = sniffed_type(data)
        if content_type is None or not content_type.startswith("image/"):
            raise MediaRefused("file is not a JPEG, PNG, WebP or HEIC image")
        return data, content_type

    def _remember(self, key: str, provider_id: str) -> None:
        self._sent[key] = provider_id
        while len(self._sent) > _SENT_MEMORY:
            self._sent.popitem(last=False)


def _file_id(media_url: str) -> str:
    if not media_url.startswith(MEDIA_SCHEME) or len(media_url) == len(MEDIA_SCHEME):
        raise MediaRefused("not a Telegram file reference")
    return media_url.removeprefix(MEDIA_SCHEME)


def check_webhook_secret(secret: str) -> None:
    """Telegram accepts 1-256 characters of A-Z, a-z, 0-9, ``_`` and ``-`` as the secret."""
    if not _SECRET_TOKEN.fullmatch(secret):
        raise ValueError(
            "TELEGRAM_WEBHOOK_SECRET: must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
        )


def inline_keyboard(message: OutboundMessage) -> InlineKeyboardMarkup | None:
    """One button per row (labels carry prices and are long); pressing one sends its value."""
    if not message.choices:
        return None
    for choice in message.choices:
        size = len(choice.value.encode())
        if not 1 <= size <= CALLBACK_DATA_LIMIT:
            raise Undeliverable(
                f"choice value is {size} bytes; Telegram callback_data takes 1-64 bytes"
            )
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(choice.label, callback_data=choice.value)]
            for choice in message.choices
        ]
    )


def split_text(text: str, limit: int = MESSAGE_TEXT_LIMIT) -> list[str]:
    """Parts of at most ``limit`` characters, cut at a line break where there is one."""
    if not text.strip():
        raise Undeliverable("Telegram does not send empty messages")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        cut = cut if cut > 0 else limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest.strip():
        parts.append(rest)
    return parts


def update_to_inbound(update: Update, received_at: datetime) -> InboundMessage | None:
    """A renter's message or button press in a private chat; anything else is not ours (None)."""
    query = update.callback_query
    if query is not None:
        origin = query.message
        if origin is None or origin.chat.type != ChatType.PRIVATE or not query.data:
            return None
        return InboundMessage(
            channel=CHANNEL,
            address=str(origin.chat.id),
            text=query.data,
            provider_id=str(update.update_id),
            received_at=received_at,
            language_hint=query.from_user.language_code,
            display_name=query.from_user.full_name,
            raw=update.to_dict(),
        )
    message = update.message  # edited messages and channel posts are other fields: not ours
    if message is None or message.chat.type != ChatType.PRIVATE:
        return None
    user = message.from_user
    return InboundMessage(
        channel=CHANNEL,
        address=str(message.chat.id),
        text=message.text or message.caption or "",
        provider_id=str(update.update_id),
        received_at=received_at,
        media=_media(message),
        language_hint=user.language_code if user else None,
        display_name=user.full_name if user else None,
        raw=update.to_dict(),
    )


def _media(message: Message) -> tuple[Media, ...]:
    if message.photo:
        largest = max(
            message.photo, key=lambda size: (size.width * size.height, size.file_size or 0)
        )
        return (Media(url=MEDIA_SCHEME + largest.file_id, content_type="image/jpeg"),)
    document = message.document
    if document is not None:
        # Non-image documents travel too, so the flow can say it needs a photo instead.
        content_type = document.mime_type or "application/octet-stream"
        return (Media(url=MEDIA_SCHEME + document.file_id, content_type=content_type),)
    return ()


def _chat_id(address: str) -> int:
    try:
        return int(address)
    except ValueError:
        raise Undeliverable("not a Telegram chat id") from None


def _channel_error(err: TelegramError, method: str) -> ChannelError:
    """Our error for a Bot API failure (PTB subclasses: BadRequest and TimedOut are
    NetworkErrors, so the order of these checks matters)."""
    text = _scrub(err.message)
    if isinstance(err, RetryAfter):
        return RateLimited(_retry_after(err))
    if isinstance(err, Forbidden):  # blocked by the user, user deactivated, kicked
        return Undeliverable(f"Telegram {method}: {text}")
    if isinstance(err, BadRequest):
        if any(gone in text.lower() for gone in _GONE):
            return Undeliverable(f"Telegram {method}: {text}")
        return ChannelError(f"Telegram {method} refused: {text}")
    if isinstance(err, TimedOut):
        return ChannelError(f"Telegram {method} timed out")
    if isinstance(err, NetworkError):
        return ChannelError(f"Telegram {method} network error: {text}")
    if isinstance(err, ChatMigrated):
        return ChannelError(f"Telegram {method}: group moved to chat {err.new_chat_id}")
    if isinstance(err, InvalidToken):
        return ChannelError(f"Telegram {method}: the bot token was refused")
    return ChannelError(f"Telegram {method} failed: {type(err).__name__}: {text}")


def _retry_after(err: RetryAfter) -> timedelta:
    with warnings.catch_warnings():  # PTB 22 warns that the int form will become a timedelta
        warnings.simplefilter("ignore")
        value = err.retry_after
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def _scrub(text: str) -> str:
    return BOT_TOKEN_IN_TEXT.sub("bot<token>", text)
