"""The Channel port: how an outbound message reaches a renter on SMS, WhatsApp, Telegram or the
sandbox. Each transport renders choices its own way."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from flows.messages import OutboundMessage


class ChannelError(Exception):
    """A transport failed to send; the outbox retries."""


class Undeliverable(ChannelError):
    """The message can never be delivered as it is (an opted-out or invalid number, a blocked
    bot); retrying will not help, so the outbox marks it failed instead."""


class Channel(Protocol):
    name: str

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        """Send ``message``; returns the provider's message id."""
        ...


@runtime_checkable
class FindsSent(Protocol):
    """A channel whose provider takes no idempotency key, but can say what was sent: before a
    retried send, the outbox asks it whether an earlier attempt got through after all."""

    async def find_sent(self, message: OutboundMessage, since: datetime) -> list[str]:
        """The provider's ids of messages like ``message`` accepted at or after ``since``,
        newest first; the caller skips those already recorded as other messages."""
        ...


@runtime_checkable
class SendsOutsideWindow(Protocol):
    """A channel that can send a message as if its free-form window had closed (WhatsApp: the
    Content template for its kind, else SMS), for a message reported failed for that reason."""

    async def send_outside_window(self, message: OutboundMessage) -> str:
        """Send ``message`` the closed-window way; returns the provider's id for it."""
        ...


def numbered_text(message: OutboundMessage) -> str:
    """The text with its choices as numbered lines, for channels without buttons (SMS)."""
    lines = [message.text]
    # A keyword choice (YES, NO) is already named in the text; numbered ones are listed.
    lines += [
        f"{choice.value}. {choice.label}"
        for choice in message.choices
        if choice.value != choice.label
    ]
    return "\n".join(lines)
