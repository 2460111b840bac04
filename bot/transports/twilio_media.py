"""The media of Twilio messages: downloading an MMS/WhatsApp attachment, and naming the message
and media file a media URL points at (to delete it at Twilio).

The account's credentials go only to the Twilio API origin; a redirect elsewhere (Twilio sends
media from a signed storage URL) is followed without them. The size is checked on Content-Length
and again while reading, so a large or lying response is cut off early.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection

import aiohttp
from yarl import URL

from bot.channels import ChannelError

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


async def download_media(
    session: aiohttp.ClientSession,
    url: str,
    *,
    origin: URL,
    authorization: str,
    within: float,
    max_bytes: int,
    allowed_types: Collection[str],
) -> tuple[bytes, str]:
    """The bytes and content type at ``url``, which must be on ``origin`` (the only origin
    ``authorization`` is sent to), within ``within`` seconds in all. Raises ``MediaRefused``
    for what retrying cannot fix, ``ChannelError`` for what it can."""
    allowed = {kind.lower() for kind in allowed_types}
    current = _http_url(url)
    if current is None or current.origin() != origin:
        raise MediaRefused("untrusted_host")
    try:
        async with asyncio.timeout(within):
            for _hop in range(MAX_MEDIA_REDIRECTS + 1):
                # Redirects are followed here, not by aiohttp, so that the credentials go
                # with a request only when it is for the Twilio origin itself.
                headers = {"Authorization": authorization} if current.origin() == origin else {}
                async with session.get(current, headers=headers, allow_redirects=False) as response:
                    if response.status in _REDIRECTS:
                        current = _redirect_target(current, response)
                        continue
                    return await _read_media(response, max_bytes, allowed)
            raise ChannelError("media download redirected too many times")
    except TimeoutError as err:
        raise ChannelError("media download timed out") from err
    except aiohttp.ClientError as err:
        raise ChannelError(f"media download failed: {type(err).__name__}") from err


def media_of_message(url: str, *, origin: URL, account_sid: str) -> tuple[str, str] | None:
    """The message sid and media sid ``url`` names, when it is a media file of a message of
    ``account_sid`` on ``origin``; None for any other URL."""
    current = _http_url(url)
    found = _MEDIA_PATH.search(current.path) if current is not None else None
    if (
        current is None
        or found is None
        or current.origin() != origin
        or found["account"] != account_sid
    ):
        return None
    return found["message"], found["media"]


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
