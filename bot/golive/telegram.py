"""Telegram: the bot's webhook (``setWebhook``, as ``serve`` sets it at start-up), its
deliveries (``getWebhookInfo``) and the operators' group (``getChat``, ``getChatMember``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from telegram import ChatMemberAdministrator, ChatMemberOwner
from telegram.error import TelegramError

from bot.channels import ChannelError
from bot.config import TelegramSettings
from bot.golive.checks import Check, ProviderFailed, failed, one_line, passed
from bot.transports.telegram import RENTER_UPDATES, TelegramChannel
from bot.transports.telegram_routes import register_webhook, webhook_url

CONNECT = "run `keyturn connect`"


@asynccontextmanager
async def _bot(settings: TelegramSettings) -> AsyncIterator[TelegramChannel]:
    """The bot, started (``getMe`` proves the token)."""
    channel = TelegramChannel(settings.bot_token, api_base=settings.api_base)
    try:
        await channel.start()
    except ChannelError as err:
        raise ProviderFailed(one_line(err)) from None
    try:
        yield channel
    except TelegramError as err:
        raise ProviderFailed(f"Telegram: {one_line(err)}") from None
    finally:
        await channel.stop()


async def connect(settings: TelegramSettings, public_url: str) -> list[str]:
    url = webhook_url(public_url)
    updates = ", ".join(RENTER_UPDATES)
    async with _bot(settings) as channel:
        info = await channel.bot.get_webhook_info()
        if info.url == url and set(info.allowed_updates or ()) == set(RENTER_UPDATES):
            return [f"telegram: unchanged: @{channel.bot.username} posts {updates} to {url}"]
        try:
            await register_webhook(channel, public_url, settings.webhook_secret)
        except ChannelError as err:
            raise ProviderFailed(one_line(err)) from None
        was = f" (it posted to {info.url})" if info.url and info.url != url else ""
        return [f"telegram: webhook set: @{channel.bot.username} posts {updates} to {url}{was}"]


async def checks(settings: TelegramSettings, public_url: str) -> list[Check]:
    channel = TelegramChannel(settings.bot_token, api_base=settings.api_base)
    try:
        await channel.start()
    except ChannelError as err:
        return [failed("telegram bot", one_line(err), "check TELEGRAM_BOT_TOKEN (from @BotFather)")]
    try:
        found = [passed("telegram bot", f"@{channel.bot.username} answers getMe")]
        try:
            found += await _webhook(channel, webhook_url(public_url))
        except TelegramError as err:
            said = f"getWebhookInfo failed: {one_line(err)}"
            found.append(failed("telegram webhook", said, "run `keyturn doctor` again later"))
        if settings.ops_chat_id is not None:
            found.append(await _ops_chat(channel, settings.ops_chat_id))
        return found
    finally:
        await channel.stop()


async def _webhook(channel: TelegramChannel, url: str) -> list[Check]:
    info = await channel.bot.get_webhook_info()
    wanted = ", ".join(RENTER_UPDATES)
    if info.url != url:
        at = f"posts to {info.url}" if info.url else "has no webhook"
        return [failed("telegram webhook", f"the bot {at}, not {url}", CONNECT)]
    updates = tuple(info.allowed_updates or ())
    if set(updates) != set(RENTER_UPDATES):
        given = ", ".join(updates) or "Telegram's default updates"
        return [failed("telegram webhook", f"subscribed to {given}, not {wanted}", CONNECT)]
    found = [passed("telegram webhook", f"{url} for {wanted}")]
    if info.last_error_message:
        when = f" at {info.last_error_date:%Y-%m-%d %H:%M} UTC" if info.last_error_date else ""
        found.append(
            failed(
                "telegram deliveries",
                f"the last delivery failed{when}: {info.last_error_message}",
                "check that KEYTURN_PUBLIC_URL reaches `keyturn serve` over https",
            )
        )
    elif info.pending_update_count:
        found.append(
            failed(
                "telegram deliveries",
                f"{info.pending_update_count} updates wait to be delivered",
                "start `keyturn serve` (or find why it does not answer Telegram)",
            )
        )
    else:
        found.append(passed("telegram deliveries", "no error, no update waiting"))
    return found


async def _ops_chat(channel: TelegramChannel, chat_id: int) -> Check:
    name = "ops chat"
    try:
        chat = await channel.bot.get_chat(chat_id)
        member = await channel.bot.get_chat_member(chat_id, channel.bot.id)
    except TelegramError as err:
        return failed(
            name,
            f"chat {chat_id} cannot be read: {one_line(err)}",
            "add the bot to the operators' group and check TELEGRAM_OPS_CHAT_ID",
        )
    title = chat.title or str(chat_id)
    if member.status in ("left", "kicked"):
        return failed(name, f"the bot is not in {title!r}", "add the bot to the group")
    if not chat.is_forum:
        return passed(name, f"{title!r} reachable, the bot is {member.status}")
    if isinstance(member, ChatMemberOwner) or (
        isinstance(member, ChatMemberAdministrator) and member.can_manage_topics
    ):
        return passed(name, f"{title!r} reachable, the bot is an admin that manages topics")
    return failed(
        name,
        f"{title!r} is a forum and the bot cannot manage its topics ({member.status})",
        "make the bot an administrator of the group with the right to manage topics",
    )
