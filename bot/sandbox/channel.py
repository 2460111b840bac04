"""The sandbox channel: renters chat from a browser page; nothing leaves the machine."""

from __future__ import annotations

import uuid

from flows.messages import OutboundMessage

MAX_MEDIA = 5 * 1024 * 1024


class SandboxChannel:
    """Delivery is the outbox marking the message sent; the page reads sent messages back."""

    name = "sandbox"

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        #: Pictures sent from the page, until the flow that asked for them has fetched them.
        self.media: dict[str, tuple[bytes, str]] = {}

    def keep_media(self, content: bytes, content_type: str) -> str:
        if len(content) > MAX_MEDIA:
            raise ValueError("too_large")
        media_id = uuid.uuid4().hex
        self.media[media_id] = (content, content_type)
        return f"sandbox-media:{media_id}"

    async def fetch_media(self, url: str) -> tuple[bytes, str]:
        found = self.media.pop(url.removeprefix("sandbox-media:"), None)
        if found is None:
            raise ValueError("unavailable")
        return found

    def forget_media(self, url: str) -> None:
        self.media.pop(url.removeprefix("sandbox-media:"), None)

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        self.sent.append(message)
        if len(self.sent) > 1000:
            del self.sent[:500]
        return f"SB{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}"
