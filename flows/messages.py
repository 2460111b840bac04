"""Normalized messages: the only shape in which flows see what renters send and receive."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Media:
    url: str
    content_type: str


@dataclass(frozen=True)
class InboundMessage:
    """What a renter sent, on any channel."""

    channel: str  # sms, whatsapp, telegram, sandbox
    address: str  # E.164 phone number, Telegram chat id, sandbox address
    text: str
    provider_id: str  # the channel's own message id, so a retried delivery is dropped
    received_at: datetime
    media: tuple[Media, ...] = ()
    language_hint: str | None = None  # e.g. Telegram's language_code
    display_name: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Choice:
    """One numbered choice (SMS) or button (Telegram); ``value`` is what picking it sends."""

    value: str
    label: str


@dataclass(frozen=True)
class OutboundMessage:
    """What Keyturn sends, already rendered in the renter's language."""

    channel: str
    address: str
    text: str
    choices: tuple[Choice, ...] = ()
    kind: str = "reply"  # reply, or a business-initiated kind (pin, reminder) for templates
    template_variables: Mapping[str, str] = field(default_factory=dict)
    #: Photos to attach (one a staff member posted), by reference; ``text`` is their caption.
    media: tuple[Media, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "channel": self.channel,
            "address": self.address,
            "text": self.text,
            "choices": [[c.value, c.label] for c in self.choices],
            "kind": self.kind,
            "template_variables": dict(self.template_variables),
        }
        if self.media:
            payload["media"] = [[m.url, m.content_type] for m in self.media]
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> OutboundMessage:
        return cls(
            channel=str(payload["channel"]),
            address=str(payload["address"]),
            text=str(payload["text"]),
            choices=tuple(Choice(str(v), str(label)) for v, label in payload.get("choices", [])),
            kind=str(payload.get("kind", "reply")),
            template_variables={
                str(k): str(v) for k, v in dict(payload.get("template_variables", {})).items()
            },
            media=tuple(Media(str(url), str(kind)) for url, kind in payload.get("media", [])),
        )
