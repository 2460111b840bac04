"""Twilio SMS and WhatsApp: the Channel port on Twilio's REST API, and media downloads.

One ``TwilioAccount`` owns the SDK client (its async HTTP client must be built inside the running
event loop, hence ``start()``/``close()``) and the session that downloads MMS/WhatsApp media. The
SMS and WhatsApp channels share it and differ only in how they render a message:

- SMS: the text with its choices as numbered lines.
- WhatsApp: the same text while the renter wrote within the last 24 hours (``last_inbound_at`` of
  the conversation); outside that window WhatsApp refuses free-form text (Twilio error 63016), so
  the message goes as the approved Content template configured for its ``kind`` (``content_sid``
  + ``content_variables``, no body), else by SMS when an SMS number is configured, else it is
  undeliverable.

Twilio errors become ours: a recipient that can never get the message (opted out, not a valid or
not a mobile number, not on WhatsApp, blocked us) → ``Undeliverable``, which the outbox does not
retry; everything else (429, 5xx, network, timeouts, our own misconfiguration) → ``ChannelError``,
which it retries with backoff and alerts on. Twilio's Messages API takes no idempotency key, so a
retried send first looks for itself among the recipient's newest messages (``find_sent``): a send
that timed out after Twilio accepted it is then recorded rather than sent twice.

Nothing here logs a message body (it may hold a PIN), a phone number or the auth token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from tortoise.backends.base.client import BaseDBAsyncClient
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from yarl import URL

from bot.channels import ChannelError, Undeliverable, numbered_text
from bot.dispatcher import RecipientRefused
from bot.media_links import MediaLinks
from flows.clock import Clock
from flows.effects import FollowUp, Outcome
from flows.messages import Media, OutboundMessage
from storage.models import Conversation, Renter

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.twilio.com"
WHATSAPP_PREFIX = "whatsapp:"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
#: WhatsApp accepts free-form text for 24 hours after the renter's last message. A message sent
#: in the last minutes could reach WhatsApp after the window closed, so those use the template.
WHATSAPP_WINDOW = timedelta(hours=24)
WHATSAPP_WINDOW_MARGIN = timedelta(minutes=5)
#: Twilio refuses bodies longer than this (error 21617).
MAX_BODY_LENGTH = 1600
#: Twilio attaches at most 10 media files to an MMS, and one to a WhatsApp message.
MAX_MEDIA = 10
MAX_WHATSAPP_MEDIA = 1
#: How many of a recipient's newest messages a retried send looks through for itself.
RECENT_MESSAGES = 20
#: Twilio's clock and ours may differ by this much when a retried send looks for itself.
CLOCK_SKEW = timedelta(minutes=1)

OPTED_OUT = 21610
#: Message statuses after which Twilio will not deliver it.
NEVER_DELIVERED = frozenset({"failed", "undelivered"})
OUTSIDE_WHATSAPP_WINDOW = 63016
#: Twilio error codes meaning this recipient cannot get this message, whatever we retry.
UNDELIVERABLE_CODES: Mapping[int, str] = {
    21211: "the 'To' number is not a valid phone number",
    21610: "the recipient unsubscribed (STOP)",
    21614: "the 'To' number is not a mobile number",
    21635: "the 'To' number is a landline",
    63003: "the channel could not find the 'To' address",
    63014: "the recipient blocked the sender",
    63024: "the recipient is not a valid WhatsApp user",
}

#: Twilio error codes meaning this message is malformed: sending it again cannot help.
MALFORMED_CODES: Mapping[int, str] = {
    21617: "the body is over 1,600 characters",
    21619: "no body, media or template",
    21620: "a media URL is not a URL",
    21623: "more than 10 media files",
    21655: "the template (ContentSid) is not valid",
    21656: "the template variables are not valid",
}

MAX_MEDIA_REDIRECTS = 3
#: The path of a media file of a message, as ``MediaUrl{N}`` carries it.
_MEDIA_PATH = re.compile(
    r"/2010-04-01/Accounts/(?P<account>AC\w+)/Messages/(?P<message>\w+)/Media/(?P<media>\w+)"
    r"(?:\.json)?$"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class MediaRefused(ValueError):
    """A media download Keyturn will not accept: ``reason`` says why, for the renter's reply.

    Reasons: ``too_large``, ``unsupported_type``, ``untrusted_host`` (not a Twilio media URL, so
    no credentials are sent), ``unavailable`` (Twilio no longer has it).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecipientUnreachable(Undeliverable):
    """Twilio refused the recipient with one of ``UNDELIVERABLE_CODES``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"twilio {code}: {UNDELIVERABLE_CODES[code]}")
        self.code = code


class OptedOut(RecipientUnreachable, RecipientRefused):
    """Twilio blocks this SMS number: it sent STOP (21610). Keyturn marks its renter opted out
    too, with the send's outcome."""

    def __init__(self, learnt: FollowUp) -> None:
        Undeliverable.__init__(self, f"twilio {OPTED_OUT}: {UNDELIVERABLE_CODES[OPTED_OUT]}")
        self.code = OPTED_OUT
        self.learnt = learnt


class OutsideWhatsAppWindow(ChannelError):
    """Twilio refused free-form WhatsApp text: the 24-hour window is closed (63016)."""


class TwilioAccount:
    """One Twilio account: the REST client both channels send through, and media downloads."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        public_url: str,
        api_base: str | None = None,
        timeout: float = 10.0,
        media_timeout: float = 30.0,
        media_links: MediaLinks | None = None,
    ) -> None:
        self.account_sid = account_sid
        #: Public links to photos Keyturn attaches (Twilio fetches media by URL).
        self.media_links = media_links
        self._auth_token = auth_token
        self.status_callback = public_url.rstrip("/") + STATUS_CALLBACK_PATH
        self.api_base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self._custom_base = api_base is not None
        #: Credentials go only to this origin (Twilio's media URLs live on the API host).
        self.media_origin = URL(self.api_base).origin()
        self.timeout = timeout
        self.media_timeout = media_timeout
        self._basic_auth = aiohttp.encode_basic_auth(account_sid, auth_token)
        self._client: Any = None
        self._media: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the token
        return f"TwilioAccount({self.account_sid!r}, api_base={self.api_base!r})"

    async def start(self) -> None:
        """Build the clients; must run inside the event loop (the SDK opens an aiohttp session)."""
        if self._client is not None:
            return
        client = Client(self.account_sid, self._auth_token, http_client=AsyncTwilioHttpClient())
        if self._custom_base:
            client.api.base_url = self.api_base
            # TWILIO_EDGE/TWILIO_REGION in the environment would rewrite the host of a custom base.
            client.edge = None
            client.region = None
        self._client = client
        self._media = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=20)
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        media, self._media = self._media, None
        if client is not None:
            await client.http_client.close()
        if media is not None:
            await media.close()

    @contextlib.asynccontextmanager
    async def _api_call(self) -> AsyncIterator[Any]:
        """One REST call with the client, bounded by ``timeout``; Twilio's and the network's
        errors become ``ChannelError`` (``Undeliverable`` where retrying cannot help)."""
        if self._client is None:
            raise ChannelError("the Twilio account is not started")
        try:
            async with asyncio.timeout(self.timeout):
                yield self._client
        except TwilioException as err:
            raise _channel_error(err) from err
        except TimeoutError as err:
            raise ChannelError(f"Twilio did not answer within {self.timeout:g} s") from err
        except (aiohttp.ClientError, OSError, ValueError) as err:
            raise ChannelError(f"Twilio request failed: {type(err).__name__}") from err

    def media_urls(self, media: Sequence[Media], *, most: int = MAX_MEDIA) -> list[str]:
        """The links Twilio fetches ``media`` from (``MediaUrl``; 5 MB in all)."""
        if not media:
            return []
        if self.media_links is None:
            raise Undeliverable("photos need KEYTURN_PUBLIC_URL, where Twilio fetches them")
        if len(media) > most:
            raise Undeliverable(f"{len(media)} photos; Twilio sends at most {most} here")
        return [self.media_links.url_for(item) for item in media]

    async def create_message(self, **params: str | list[str]) -> str:
        """Create a Message resource; returns its sid. ``params`` are the SDK's ``create`` ones."""
        async with self._api_call() as client:
            message = await client.messages.create_async(
                status_callback=self.status_callback, **params
            )
        sid = getattr(message, "sid", None)
        if not sid:
            raise ChannelError("Twilio answered without a message sid")
        return str(sid)

    async def find_message(
        self, *, to: str, from_: str, body: str, since: datetime, media: int = 0
    ) -> list[str]:
        """The sids of messages created from ``from_`` to ``to`` with ``body`` at or after
        ``since``, newest first: a send whose answer was lost (a timeout, a worker that died
        before recording it) may have reached Twilio, and must not be sent a second time.

        Twilio's Messages API takes no idempotency key, so the account's recent messages to the
        recipient are read instead (one page is enough). One Twilio reports failed or undelivered
        is no send to adopt: it never reached the renter, and the retry sends it again."""
        async with self._api_call() as client:
            recent = await client.messages.list_async(
                to=to, from_=from_, limit=RECENT_MESSAGES, page_size=RECENT_MESSAGES
            )
        earliest = since - CLOCK_SKEW
        return [
            str(found.sid)
            for found in recent
            if found.body == body
            and found.status not in NEVER_DELIVERED
            and str(found.num_media or "0") == str(media)
            and isinstance(found.date_created, datetime)
            and found.date_created >= earliest
        ]

    async def fetch_media(
        self, url: str, *, max_bytes: int, allowed_types: Collection[str]
    ) -> tuple[bytes, str]:
        """Download an MMS/WhatsApp attachment; returns its bytes and content type (as Twilio
        has it from the sender: what the file is, the flow that keeps it reads from its bytes).

        The account's credentials go only to the Twilio API origin; a redirect elsewhere (Twilio
        sends media from a signed storage URL) is followed without them. The size is checked on
        Content-Length and again while reading, so a large or lying response is cut off early.
        Raises ``MediaRefused`` for what retrying cannot fix, ``ChannelError`` for what it can.
        """
        if self._media is None:
            raise ChannelError("the Twilio account is not started")
        allowed = {kind.lower() for kind in allowed_types}
        current = _http_url(url)
        if current is None or current.origin() != self.media_origin:
            raise MediaRefused("untrusted_host")
        try:
            async with asyncio.timeout(self.media_timeout):
                for _hop in range(MAX_MEDIA_REDIRECTS + 1):
                    # Redirects are followed here, not by aiohttp, so that the credentials go
                    # with a request only when it is for the Twilio origin itself.
                    headers = (
                        {"Authorization": self._basic_auth}
                        if current.origin() == self.media_origin
                        else {}
                    )
                    async with self._media.get(
                        current, headers=headers, allow_redirects=False
                    ) as response:
                        if response.status in _REDIRECTS:
                            current = _redirect_target(current, response)
                            continue
                        return await _read_media(response, max_bytes, allowed)
                raise ChannelError("media download redirected too many times")
        except TimeoutError as err:
            raise ChannelError("media download timed out") from err
        except aiohttp.ClientError as err:
            raise ChannelError(f"media download failed: {type(err).__name__}") from err

    async def delete_media(self, url: str) -> bool:
        """Delete a media file of an inbound message at Twilio (``DELETE
        …/Messages/{MessageSid}/Media/{MediaSid}``), so that its URL no longer serves it.

        True when it is gone (deleted now, or already: Twilio answers 404); False for a URL that
        is not one of this account's media, which is not Twilio's to delete. Other failures are
        ``ChannelError``, for the outbox to retry."""
        current = _http_url(url)
        found = _MEDIA_PATH.search(current.path) if current is not None else None
        if (
            current is None
            or found is None
            or current.origin() != self.media_origin
            or found["account"] != self.account_sid
        ):
            return False
        async with self._api_call() as client:
            media = client.api.v2010.accounts(self.account_sid).messages(found["message"])
            try:
                await media.media(found["media"]).delete_async()
            except TwilioRestException as err:
                if err.status != 404:
                    raise
        return True


def _http_url(raw: str) -> URL | None:
    try:
        url = URL(raw)
    except (TypeError, ValueError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return url


def _redirect_target(current: URL, response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location")
    target = _http_url(str(current.join(URL(location)))) if location else None
    if target is None:
        raise ChannelError("media redirect without a usable Location")
    return target


async def _read_media(
    response: aiohttp.ClientResponse, max_bytes: int, allowed: Collection[str]
) -> tuple[bytes, str]:
    if response.status == 429 or response.status >= 500:
        raise ChannelError(f"media download answered HTTP {response.status}")
    if response.status in (404, 410):
        raise MediaRefused("unavailable")
    if response.status >= 300:
        # 401/403 mean our credentials are wrong (or the link is bad): an operator must look.
        raise ChannelError(f"media download answered HTTP {response.status}")
    content_type = response.content_type.lower()
    if content_type not in allowed:
        raise MediaRefused("unsupported_type")
    if response.content_length is not None and response.content_length > max_bytes:
        raise MediaRefused("too_large")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise MediaRefused("too_large")
    return bytes(body), content_type


def _channel_error(err: TwilioException) -> ChannelError:
    code = _int(getattr(err, "code", None))
    status = _int(getattr(err, "status", None))
    if code in UNDELIVERABLE_CODES:
        return RecipientUnreachable(code)
    if code == OUTSIDE_WHATSAPP_WINDOW:
        return OutsideWhatsAppWindow("twilio 63016: outside the WhatsApp 24-hour window")
    if code in MALFORMED_CODES:
        return Undeliverable(f"twilio {code}: {MALFORMED_CODES[code]}")
    return ChannelError(f"twilio error {code or '?'} (HTTP {status or '?'})")


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _body(text: str) -> str:
    if len(text) <= MAX_BODY_LENGTH:
        return text
    log.warning("outbound text cut to %d characters", MAX_BODY_LENGTH)
    return text[: MAX_BODY_LENGTH - 1] + "…"


class TwilioSmsChannel:
    """Channel ``sms``: plain text with numbered choices from the configured SMS number."""

    name = "sms"

    def __init__(self, account: TwilioAccount, *, from_number: str, clock: Clock) -> None:
        self.account = account
        self.from_number = from_number
        self.clock = clock

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        return await self.send_text(message.address, numbered_text(message), message.media)

    async def find_sent(self, message: OutboundMessage, since: datetime) -> list[str]:
        return await self.account.find_message(
            to=message.address,
            from_=self.from_number,
            body=_body(numbered_text(message)),
            since=since,
            media=len(message.media),
        )

    async def send_text(self, address: str, text: str, media: Sequence[Media] = ()) -> str:
        """Text, and photos by MMS (where the carrier takes MMS)."""
        params: dict[str, str | list[str]] = {"to": address, "from_": self.from_number}
        if text:
            params["body"] = _body(text)
        if media:
            params["media_url"] = self.account.media_urls(media)
        try:
            return await self.account.create_message(**params)
        except RecipientUnreachable as err:
            if err.code == OPTED_OUT:
                raise OptedOut(_mirror_opt_out(address, self.clock.now())) from err
            raise


def _mirror_opt_out(address: str, now: datetime) -> FollowUp:
    """Twilio blocks an SMS number that sent STOP; keep Keyturn's state the same."""

    async def mark(conn: BaseDBAsyncClient) -> Outcome:
        await (
            Renter.filter(phone=address, opted_out=False)
            .using_db(conn)
            .update(opted_out=True, opted_out_at=now, updated_at=now)
        )
        return Outcome()

    return mark


class TwilioWhatsAppChannel:
    """Channel ``whatsapp``: free-form text inside the 24-hour window, a template or SMS outside."""

    name = "whatsapp"

    def __init__(
        self,
        account: TwilioAccount,
        *,
        from_address: str,
        clock: Clock,
        templates: Mapping[str, str] | None = None,
        sms: TwilioSmsChannel | None = None,
    ) -> None:
        if not from_address.startswith(WHATSAPP_PREFIX):
            raise ValueError("the WhatsApp sender must start with 'whatsapp:'")
        self.account = account
        self.from_address = from_address
        self.clock = clock
        #: Message kind (pin, reminder, reply...) → approved Content template sid (HX...).
        self.templates = dict(templates or {})
        self.sms = sms

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        to = WHATSAPP_PREFIX + message.address
        text = numbered_text(message)
        if await self.within_window(message.address):
            params: dict[str, str | list[str]] = {"to": to, "from_": self.from_address}
            if text:
                params["body"] = _body(text)
            if message.media:
                params["media_url"] = self.account.media_urls(
                    message.media, most=MAX_WHATSAPP_MEDIA
                )
            try:
                return await self.account.create_message(**params)
            except OutsideWhatsAppWindow:
                log.info("WhatsApp refused free-form text (63016); using the closed-window path")
        return await self._outside_window(message, to, text)

    async def send_outside_window(self, message: OutboundMessage) -> str:
        """Send again a message WhatsApp refused after Twilio accepted it (63016 on the status
        callback): by its kind's template, else by SMS, else ``Undeliverable``."""
        return await self._outside_window(
            message, WHATSAPP_PREFIX + message.address, numbered_text(message)
        )

    async def find_sent(self, message: OutboundMessage, since: datetime) -> list[str]:
        """Free-form text already sent on WhatsApp, or by SMS when the window had closed. A
        template's text is Twilio's to render, so a template is not looked for."""
        found = await self.account.find_message(
            to=WHATSAPP_PREFIX + message.address,
            from_=self.from_address,
            body=_body(numbered_text(message)),
            since=since,
            media=len(message.media),
        )
        if not found and self.sms is not None:
            found = await self.sms.find_sent(message, since)
        return found

    async def within_window(self, address: str) -> bool:
        conversation = await Conversation.get_or_none(channel=self.name, address=address)
        last = conversation.last_inbound_at if conversation is not None else None
        if last is None:
            return False
        return self.clock.now() - last < WHATSAPP_WINDOW - WHATSAPP_WINDOW_MARGIN

    async def _outside_window(self, message: OutboundMessage, to: str, text: str) -> str:
        # A template carries no photo (Twilio 63030): a message with one goes by SMS (MMS).
        content_sid = None if message.media else self.templates.get(message.kind)
        if content_sid is not None:
            params = {"to": to, "from_": self.from_address, "content_sid": content_sid}
            if message.template_variables:
                params["content_variables"] = json.dumps(dict(message.template_variables))
            try:
                return await self.account.create_message(**params)
            except OutsideWhatsAppWindow as err:
                raise Undeliverable(
                    f"template {content_sid} for {message.kind!r} cannot open a conversation"
                ) from err
        if self.sms is not None:
            log.info("WhatsApp window closed, no template for %r: sending by SMS", message.kind)
            return await self.sms.send_text(message.address, text, message.media)
        raise Undeliverable(
            f"WhatsApp window closed, no template for {message.kind!r} and no SMS number"
        )


TwilioChannel = TwilioSmsChannel | TwilioWhatsAppChannel


def twilio_channels(
    account: TwilioAccount,
    *,
    clock: Clock,
    sms_from: str | None,
    whatsapp_from: str | None,
    whatsapp_templates: Mapping[str, str] | None = None,
) -> dict[str, TwilioChannel]:
    """The channels a Twilio configuration runs: ``sms`` and/or ``whatsapp``, keyed by name."""
    channels: dict[str, TwilioChannel] = {}
    sms = TwilioSmsChannel(account, from_number=sms_from, clock=clock) if sms_from else None
    if sms is not None:
        channels[sms.name] = sms
    if whatsapp_from:
        whatsapp = TwilioWhatsAppChannel(
            account,
            from_address=whatsapp_from,
            clock=clock,
            templates=whatsapp_templates,
            sms=sms,
        )
        channels[whatsapp.name] = whatsapp
    return channels
