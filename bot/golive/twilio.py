"""Twilio: where renters' messages are posted. An SMS number's ``sms_url`` (or the inbound
request URL of the Messaging Service named by ``TWILIO_MESSAGING_SERVICE_SID``), and the
WhatsApp sender's webhook through the Senders API. Status callbacks travel with every send, so
nothing registers them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.messaging.v2.channels_sender import ChannelsSenderContext

from bot.config import TwilioSettings
from bot.golive.checks import Check, ProviderFailed, failed, one_line, passed
from bot.transports.twilio_routes import INBOUND_PATH

T = TypeVar("T")
TIMEOUT = 15.0
CONNECT = "run `keyturn connect`"


class _JsonBodies(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's aiohttp client form-encodes every body, also the JSON the Senders API takes
    (its requests-based client sends those as JSON): a JSON request goes out as JSON here."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the SDK's signature)
        allow_redirects: bool = False,
    ) -> Response:
        body: Any = data
        if data is not None and (headers or {}).get("Content-Type") == "application/json":
            body = json.dumps(data)
        return await super().request(
            method, url, params, body, headers, auth, timeout, allow_redirects
        )


@asynccontextmanager
async def _client(settings: TwilioSettings) -> AsyncIterator[Any]:
    client = Client(
        settings.account_sid,
        settings.auth_token,
        http_client=_JsonBodies(timeout=TIMEOUT),
    )
    if settings.api_base is not None:
        client.api.base_url = settings.api_base
        client.messaging.base_url = settings.api_base
        client.edge = None
        client.region = None
    try:
        yield client
    finally:
        await client.http_client.close()


async def _ask(call: Awaitable[T]) -> T:
    try:
        async with asyncio.timeout(TIMEOUT):
            return await call
    except TwilioException as err:
        raise ProviderFailed(f"Twilio: {one_line(err)}") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        raise ProviderFailed(f"Twilio did not answer: {type(err).__name__}") from None


async def connect(settings: TwilioSettings, public_url: str) -> list[str]:
    url = public_url + INBOUND_PATH
    lines: list[str] = []
    async with _client(settings) as client:
        account = client.api.v2010.accounts(settings.account_sid)
        if settings.messaging_service_sid is not None:
            service = await _ask(
                client.messaging.v1.services(settings.messaging_service_sid).fetch_async()
            )
            label = f"twilio messaging service {service.sid}"
            if _service_posts_to(service, url):
                lines.append(f"{label}: unchanged: posts incoming messages to {url}")
            else:
                await _ask(
                    service.update_async(
                        inbound_request_url=url,
                        inbound_method="POST",
                        use_inbound_webhook_on_number=False,
                    )
                )
                lines.append(f"{label}: incoming messages now posted to {url}")
        elif settings.sms_from is not None:
            number = await _number(account, settings.sms_from)
            label = f"twilio sms {settings.sms_from}"
            if number.sms_url == url and number.sms_method == "POST":
                lines.append(f"{label}: unchanged: posts incoming messages to {url}")
            else:
                await _ask(
                    account.incoming_phone_numbers(number.sid).update_async(
                        sms_url=url, sms_method="POST"
                    )
                )
                lines.append(f"{label}: incoming messages now posted to {url}")
        if settings.whatsapp_from is not None:
            lines.append(await _connect_sender(client, settings.whatsapp_from, url))
    return lines


def _service_posts_to(service: Any, url: str) -> bool:
    """The service itself posts its numbers' messages to ``url`` (with "use inbound webhook on
    number" on, each number's own ``sms_url`` would be used instead)."""
    return bool(
        service.inbound_request_url == url
        and service.inbound_method == "POST"
        and not service.use_inbound_webhook_on_number
    )


async def _number(account: Any, phone: str) -> Any:
    numbers = await _ask(account.incoming_phone_numbers.list_async(phone_number=phone, limit=5))
    number = next((n for n in numbers if n.phone_number == phone), None)
    if number is None:
        raise ProviderFailed(
            f"Twilio: the account has no phone number {phone} (check TWILIO_SMS_FROM)"
        )
    return number


async def _sender(client: Any, address: str) -> Any:
    senders = await _ask(client.messaging.v2.channels_senders.list_async(channel="whatsapp"))
    return next((s for s in senders if s.sender_id == address), None)


async def _connect_sender(client: Any, address: str, url: str) -> str:
    label = f"twilio whatsapp {address}"
    sender = await _sender(client, address)
    if sender is None:
        return (
            f"{label}: not a sender of this account (the WhatsApp Sandbox's URL is set in"
            f" Twilio's Console: set it to {url})"
        )
    hook = dict(sender.webhook or {})
    if hook.get("callback_url") == url and hook.get("callback_method") == "POST":
        return f"{label}: unchanged: posts incoming messages to {url}"
    hook.update(callback_url=url, callback_method="POST")
    request = ChannelsSenderContext.MessagingV2ChannelsSenderRequestsUpdate({"webhook": hook})
    await _ask(client.messaging.v2.channels_senders(sender.sid).update_async(request))
    return f"{label}: incoming messages now posted to {url}"


async def checks(settings: TwilioSettings, public_url: str) -> list[Check]:
    url = public_url + INBOUND_PATH
    async with _client(settings) as client:
        account = client.api.v2010.accounts(settings.account_sid)
        try:
            fetched = await _ask(account.fetch_async())
        except ProviderFailed as err:
            return [
                failed(
                    "twilio account",
                    str(err),
                    "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio Console, Account Info)",
                )
            ]
        if fetched.status != "active":
            return [failed("twilio account", f"the account is {fetched.status}", "reactivate it")]
        found = [passed("twilio account", f"{fetched.friendly_name} is active")]
        for check in (_inbound(client, account, settings, url), _whatsapp(client, settings, url)):
            try:
                found += await check
            except ProviderFailed as err:
                found.append(failed("twilio webhook", str(err), "check the TWILIO_* settings"))
        return found


async def _inbound(client: Any, account: Any, settings: TwilioSettings, url: str) -> list[Check]:
    if settings.messaging_service_sid is not None:
        service = await _ask(
            client.messaging.v1.services(settings.messaging_service_sid).fetch_async()
        )
        name = f"twilio messaging service {service.sid}"
        given, method = service.inbound_request_url, service.inbound_method
        if service.use_inbound_webhook_on_number:
            detail = "it passes incoming messages to each number's own URL"
            return [failed(name, detail + " (use inbound webhook on number)", CONNECT)]
    elif settings.sms_from is not None:
        number = await _number(account, settings.sms_from)
        name = f"twilio sms {settings.sms_from}"
        given, method = number.sms_url, number.sms_method
    else:
        return []
    if given == url and method == "POST":
        return [passed(name, f"incoming messages posted to {url}")]
    shown = f"{method} {given}" if given else "nowhere"
    return [failed(name, f"incoming messages go to {shown}, not POST {url}", CONNECT)]


async def _whatsapp(client: Any, settings: TwilioSettings, url: str) -> list[Check]:
    if settings.whatsapp_from is None:
        return []
    name = f"twilio whatsapp {settings.whatsapp_from}"
    sender = await _sender(client, settings.whatsapp_from)
    if sender is None:
        return [
            failed(
                name,
                "not a WhatsApp sender of this account",
                f"register it in Twilio's Console (a Sandbox number: set its URL to {url})",
            )
        ]
    hook = sender.webhook or {}
    if hook.get("callback_url") == url:
        return [passed(name, f"incoming messages posted to {url}")]
    given = hook.get("callback_url") or "nowhere"
    return [failed(name, f"incoming messages go to {given}, not {url}", CONNECT)]
