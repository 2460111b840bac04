"""Links through which Twilio fetches a photo a staff member sent to an SMS or WhatsApp renter.

Twilio attaches media by URL (``MediaUrl``) and downloads it when it sends. A photo posted in
the operators' Telegram group is known only by its Telegram file id, so Keyturn hands Twilio a
link of its own, ``/media/<token>``, and fetches the photo from Telegram when Twilio asks. The
token is the file reference encrypted and authenticated with a key derived from
``KEYTURN_ENCRYPTION_KEY`` (Fernet), so it reveals nothing, cannot be forged, and expires after
an hour. Nothing is stored: a photo lives in Telegram, as the operators posted it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.channels import ChannelError
from flows.clock import Clock
from flows.messages import Media

log = logging.getLogger(__name__)

#: How long a link works: Twilio fetches the media within seconds of the send.
LINK_LIFETIME = timedelta(hours=1)
#: Twilio accepts at most 5 MB of media per message.
MAX_MEDIA_BYTES = 5 * 1024 * 1024
ROUTE = "/media/{token}"

#: Fetches a referenced photo: (bytes, content type). The Telegram channel's ``fetch_photo``.
PhotoSource = Callable[..., Awaitable[tuple[bytes, str]]]


class MediaLinks:
    def __init__(self, public_url: str, encryption_key: str, clock: Clock) -> None:
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"keyturn media links"
        ).derive(base64.urlsafe_b64decode(encryption_key))
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def url_for(self, media: Media) -> str:
        now = int(self.clock.now().timestamp())
        token = self._fernet.encrypt_at_time(media.url.encode(), now).decode()
        return f"{self.public_url}/media/{token}"

    def open(self, token: str) -> str | None:
        """The media reference a token names, or None when it is forged or expired."""
        now = int(self.clock.now().timestamp())
        ttl = int(LINK_LIFETIME.total_seconds())
        try:
            return self._fernet.decrypt_at_time(token.encode(), ttl, now).decode()
        except (InvalidToken, UnicodeDecodeError):
            return None


def add_media_route(app: web.Application, links: MediaLinks, source: PhotoSource) -> None:
    async def media(request: web.Request) -> web.Response:
        reference = links.open(request.match_info["token"])
        if reference is None:
            raise web.HTTPNotFound(text="no such media")
        try:
            data, content_type = await source(reference, max_bytes=MAX_MEDIA_BYTES)
        except ChannelError as err:
            log.warning("a photo for a renter could not be fetched: %s", err)
            raise web.HTTPServiceUnavailable(text="try again later") from err
        except ValueError as err:  # the source refused it: gone, too large, not an image
            log.warning("a photo for a renter was refused: %s", err)
            raise web.HTTPNotFound(text="no such media") from err
        return web.Response(
            body=data,
            content_type=content_type,
            headers={"Cache-Control": "private, no-store"},
        )

    app.router.add_get(ROUTE, media)
