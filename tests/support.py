"""Builders shared by tests: a small inventory, a recording channel, inbound messages."""

from __future__ import annotations

import itertools
from datetime import datetime

from flows.bookings import blocked_range
from flows.messages import InboundMessage, OutboundMessage
from storage.models import Asset, Location, Renter

_ids = itertools.count(1)


def inbound(
    text: str,
    *,
    address: str = "+15550100001",
    channel: str = "sandbox",
    at: datetime,
    provider_id: str | None = None,
    language_hint: str | None = None,
) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        address=address,
        text=text,
        provider_id=provider_id or f"test-{next(_ids)}",
        received_at=at,
        language_hint=language_hint,
    )


class RecordingChannel:
    """A channel that keeps what it was asked to send, and can be told to fail."""

    def __init__(self, name: str = "sandbox") -> None:
        self.name = name
        self.sent: list[tuple[OutboundMessage, str]] = []
        self.failures_left = 0

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise ConnectionError("channel unavailable")
        self.sent.append((message, idempotency_key))
        return f"PROV{len(self.sent)}"

    def texts(self) -> list[str]:
        return [message.text for message, _ in self.sent]


async def small_inventory() -> tuple[Location, Location, Asset]:
    harbor = await Location.create(slug="harbor", name="Harbor Yard", timezone="America/New_York")
    depot = await Location.create(slug="altstadt", name="Altstadt Depot", timezone="Europe/Berlin")
    trailer = await Asset.create(
        code="T1",
        label="Utility trailer",
        location=harbor,
        currency="USD",
        price_per_hour_cents=1250,
        price_per_day_cents=6000,
        deposit_cents=10000,
    )
    await Asset.create(
        code="B1",
        label="Cargo bike",
        location=depot,
        currency="EUR",
        price_per_hour_cents=800,
        price_per_day_cents=3500,
    )
    return harbor, depot, trailer


async def rental_times(asset_id: int, start: datetime, end: datetime) -> dict[str, datetime]:
    """A booking's times as Keyturn stores them: the rental and the range it takes (its
    item's buffers, else its location's), for ``Booking.create(**…)``."""
    asset = await Asset.get(id=asset_id).prefetch_related("location")
    blocked = blocked_range(asset, start, end)
    return {
        "start_at": start,
        "end_at": end,
        "blocked_from": blocked.starts_at,
        "blocked_until": blocked.ends_at,
    }


async def a_renter(phone: str = "+15550100009") -> Renter:
    return await Renter.create(phone=phone)
