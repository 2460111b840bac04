"""``POST /webhooks/telegram``: Bot API updates in, renter turns out, and the Telegram
application's start and stop inside the aiohttp app.

Telegram sends each update until it gets a 2xx, so the route answers 200 as soon as the turn is
stored (replies go out through the outbox) and the engine drops an ``update_id`` seen before.
Updates that are not a renter's (the operators' group, staff commands) can be claimed first by
``handlers``; what nobody claims and is not a renter message is acknowledged and ignored.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from telegram import Update

from bot.keys import CLOCK, ENGINE
from bot.transports.telegram import (
    RENTER_UPDATES,
    TelegramChannel,
    check_webhook_secret,
    update_to_inbound,
)
from bot.transports.telegram_shape import well_shaped
from bot.webhook_body import read_capped
from bot.webhook_json import UnreadableJson, load_json

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
#: Updates are a few kilobytes; a body past this is not from Telegram.
MAX_UPDATE_BYTES = 256 * 1024

#: Offered each update before the renter path; returns True when it took the update.
UpdateHandler = Callable[[Update], Awaitable[bool]]


@dataclass(frozen=True)
class TelegramWebhook:
    channel: TelegramChannel
    secret: str
    #: Where Telegram should post (``KEYTURN_PUBLIC_URL``); None leaves the webhook as it is.
    public_url: str | None
    handlers: tuple[UpdateHandler, ...]
    allowed_updates: tuple[str, ...]


TELEGRAM_WEBHOOK = web.AppKey("telegram_webhook", TelegramWebhook)


def setup_telegram(
    app: web.Application,
    channel: TelegramChannel,
    *,
    secret: str,
    public_url: str | None = None,
    handlers: Sequence[UpdateHandler] = (),
    allowed_updates: Sequence[str] = RENTER_UPDATES,
) -> None:
    """Add the webhook route, and start/stop the Telegram application with the app (setting
    the webhook to ``public_url`` + ``/webhooks/telegram`` when ``public_url`` is an https URL;
    a failing getMe or setWebhook stops the start-up with a ChannelError)."""
    check_webhook_secret(secret)
    app[TELEGRAM_WEBHOOK] = TelegramWebhook(
        channel=channel,
        secret=secret,
        public_url=public_url.rstrip("/") if public_url else None,
        handlers=tuple(handlers),
        allowed_updates=tuple(allowed_updates),
    )
    app.router.add_post(WEBHOOK_PATH, telegram_webhook)
    app.cleanup_ctx.append(_telegram_application)


async def _telegram_application(app: web.Application) -> AsyncIterator[None]:
    hook = app[TELEGRAM_WEBHOOK]
    await hook.channel.start()
    try:
        if hook.public_url is not None and not hook.public_url.startswith("https://"):
            log.warning("telegram webhook not set: Telegram only posts to an https public URL")
        elif hook.public_url is not None:
            await register_webhook(hook.channel, hook.public_url, hook.secret, hook.allowed_updates)
        yield
    finally:
        await hook.channel.stop()


def webhook_url(public_url: str) -> str:
    """Where Telegram posts updates for a service reachable at ``public_url``."""
    return public_url.rstrip("/") + WEBHOOK_PATH


async def register_webhook(
    channel: TelegramChannel,
    public_url: str,
    secret: str,
    allowed_updates: Sequence[str] = RENTER_UPDATES,
) -> str:
    """Point Telegram at this service (what ``serve`` does at start-up and ``keyturn connect``
    does on demand); returns the webhook URL."""
    url = webhook_url(public_url)
    await channel.set_webhook(url, secret, allowed_updates=tuple(allowed_updates))
    return url


async def telegram_webhook(request: web.Request) -> web.Response:
    hook = request.app[TELEGRAM_WEBHOOK]
    given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, hook.secret.encode()):
        raise web.HTTPForbidden(text="missing or wrong secret token")
    data = await _update_json(request)
    try:
        update = Update.de_json(data, hook.channel.bot)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError):
        # OverflowError, OSError: a date past the platform's calendar (2**62 seconds)
        raise web.HTTPBadRequest(text="body is not a well-formed Telegram Update") from None
    for handler in hook.handlers:
        if await handler(update):
            return web.Response(text="ok")
    inbound = update_to_inbound(update, request.app[CLOCK].now())
    if inbound is None:
        log.debug("telegram update %s is not a renter message; ignored", update.update_id)
    else:
        await request.app[ENGINE].handle(inbound)
    if update.callback_query is not None:
        await hook.channel.answer_callback(update.callback_query.id)
    return web.Response(text="ok")


async def _update_json(request: web.Request) -> dict[str, object]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="updates are application/json")
    body = await read_capped(request, MAX_UPDATE_BYTES)
    try:
        data = load_json(body)
    except UnreadableJson:  # also invalid UTF-8, deep nesting, ids past 64 bits
        raise web.HTTPBadRequest(text="body must be JSON as Telegram sends it") from None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        raise web.HTTPBadRequest(text="body must be a Telegram Update object")
    if not well_shaped(data):
        raise web.HTTPBadRequest(text="a field of the update does not have the Bot API's type")
    return data
