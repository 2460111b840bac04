"""One Twilio account: the REST client both Twilio channels send through, and media downloads.

``TwilioAccount`` owns the SDK client (its async HTTP client must be built inside the running
event loop, hence ``start()``/``close()``) and the session that downloads MMS/WhatsApp media.

Twilio errors become ours: a recipient that can never get the message (opted out, not a valid or
not a mobile number, not on WhatsApp, blocked us) → ``Undeliverable``, which the outbox does not
retry; everything else (429, 5xx, network, timeouts, our own misconfiguration) → ``ChannelError``,
which it retries with backoff and alerts on. Twilio's Messages API takes no idempotency key, so a
retried send first looks for itself among the recipient's newest messages (``find_message``).

Nothing here logs a message body (it may hold a PIN), a phone number or the auth token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from yarl import URL

from bot.channels import ChannelError, Undeliverable
from bot.media_links import MediaLinks
from bot.transports.twilio_media import download_media, media_of_message
from flows.messages import Media

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.twilio.com"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
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


class RecipientUnreachable(Undeliverable):
    """Twilio refused the recipient with one of ``UNDELIVERABLE_CODES``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"twilio {code}: {UNDELIVERABLE_CODES[code]}")
        self.code = code


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
        return await download_media(
            self._media,
            url,
            origin=self.media_origin,
            authorization=self._basic_auth,
            within=self.media_timeout,
            max_bytes=max_bytes,
            allowed_types=allowed_types,
        )

    async def delete_media(self, url: str) -> bool:
        """Delete a media file of an inbound message at Twilio (``DELETE
        …/Messages/{MessageSid}/Media/{MediaSid}``), so that its URL no longer serves it.

        True when it is gone (deleted now, or already: Twilio answers 404); False for a URL that
        is not one of this account's media, which is not Twilio's to delete. Other failures are
        ``ChannelError``, for the outbox to retry."""
        found = media_of_message(url, origin=self.media_origin, account_sid=self.account_sid)
        if found is None:
            return False
        message_sid, media_sid = found
        async with self._api_call() as client:
            media = client.api.v2010.accounts(self.account_sid).messages(message_sid)
            try:
                await media.media(media_sid).delete_async()
            except TwilioRestException as err:
                if err.status != 404:
                    raise
        return True


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


def fit_body(text: str) -> str:
    """``text`` as a message body Twilio takes: cut to ``MAX_BODY_LENGTH`` characters."""
    if len(text) <= MAX_BODY_LENGTH:
        return text
    log.warning("outbound text cut to %d characters", MAX_BODY_LENGTH)
    return text[: MAX_BODY_LENGTH - 1] + "…"
