"""A renter's EXTEND: too short is refused with the minimum, and a free extension never
promises a payment link."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app import Runtime
from flows.booking import CHECKOUT_EFFECT
from storage.models import Asset, Extension, Message, OutboxEffect
from tests.conftest import FakeClock
from tests.integration.conftest import END, START, confirmed_booking
from tests.support import inbound

PHONE = "+15550100001"  # the renter of confirmed_booking


async def say(runtime: Runtime, clock: FakeClock, text: str) -> list[str]:
    before = await Message.filter(direction="out").count()
    await runtime.engine.handle(inbound(text, address=PHONE, channel="sms", at=clock.now()))
    out = await Message.filter(direction="out").order_by("id")
    return [m.body for m in out[before:]]


@pytest.mark.parametrize("duration", ["0.0002h", "10m", "14 min", "0,2h"])
async def test_an_extension_under_15_minutes_is_refused(
    runtime: Runtime, clock: FakeClock, duration: str
) -> None:
    booking = await confirmed_booking(runtime)
    clock.current = START + timedelta(minutes=30)
    [answer] = await say(runtime, clock, f"EXTEND {duration}")
    assert answer == (
        "An extension must be at least 15 minutes. For example: EXTEND 30 min or EXTEND 2h."
    )
    [answer] = await say(runtime, clock, "YES")
    assert "payment link" not in answer
    assert await Extension.all().count() == 0
    assert not await OutboxEffect.filter(kind=CHECKOUT_EFFECT).exists()
    await booking.refresh_from_db()
    assert booking.end_at == END


async def test_a_15_minute_extension_is_quoted(runtime: Runtime, clock: FakeClock) -> None:
    await confirmed_booking(runtime)
    clock.current = START + timedelta(minutes=30)
    [quote] = await say(runtime, clock, "EXTEND 15 min")
    assert "$12.50" in quote
    [paying] = await say(runtime, clock, "YES")
    assert "Your payment link for the extension follows" in paying
    assert await OutboxEffect.filter(kind=CHECKOUT_EFFECT).count() == 1


async def test_a_free_extension_says_so_and_sends_no_link(
    runtime: Runtime, clock: FakeClock
) -> None:
    await Asset.filter(code="T1").update(price_per_hour_cents=0, price_per_day_cents=0)
    booking = await confirmed_booking(runtime)
    clock.current = START + timedelta(minutes=30)
    [quote] = await say(runtime, clock, "EXTEND 1h")
    assert "$0.00" in quote
    replies = await say(runtime, clock, "YES")
    assert "Good. There is nothing to pay for this extension." in replies
    assert any("your rental now ends Wed, Jun 3 3:00\u202fPM" in reply for reply in replies)
    assert not any("payment link" in reply for reply in replies)
    assert not await OutboxEffect.filter(kind=CHECKOUT_EFFECT).exists()
    await booking.refresh_from_db()
    assert booking.end_at == END + timedelta(hours=1)
