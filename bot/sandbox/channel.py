"""The sandbox channel: renters chat from a browser page; nothing leaves the machine."""

from __future__ import annotations

import uuid

from flows.messages import OutboundMessage


class SandboxChannel:
    """Delivery is the outbox marking the message sent; the page reads sent messages back."""

    name = "sandbox"

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        self.sent.append(message)
        if len(self.sent) > 1000:
            del self.sent[:500]
        return f"SB{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key).hex}"
