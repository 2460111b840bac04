"""What one renter may hold: at most KEYTURN_MAX_UNPAID_PER_RENTER bookings awaiting payment,
none starting beyond the location's booking horizon; told why, in their language, over the
sandbox page's HTTP API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from storage.models import Booking, BookingState, Message, Payment, Renter
from tests.e2e.sandbox_apps import ADDRESS, MakeApp, sandbox_apps, say
from tests.support import inbound


@pytest.fixture
async def make_app(database: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    async with sandbox_apps(database, tmp_path) as make:
        yield make


async def test_a_renter_holds_at_most_two_unpaid_bookings(make_app: MakeApp) -> None:
    app = await make_app()
    for code in ("T1", "T2"):
        [quote] = await say(app, f"BOOK {code} tomorrow 10-14")
        assert "Reply YES" in quote
        holding, link = await say(app, "YES")
        assert f"holding {code}" in holding and "/sandbox/pay/" in link
    [quote] = await say(app, "BOOK S1 tomorrow 10-14")
    [refused] = await say(app, "YES")
    assert "You already have as many bookings waiting for payment as one renter may (2)" in refused
    assert await Booking.filter(state=BookingState.AWAITING_PAYMENT).count() == 2
    assert await Payment.all().count() == 2, "no third payment link"
    # Another renter is not held back by the first one's bookings.
    await say(app, "BOOK S1 tomorrow 10-14", address="+15550100002")
    holding, _ = await say(app, "YES", address="+15550100002")
    assert "holding S1" in holding


async def test_the_unpaid_limit_is_a_setting_and_speaks_the_renters_language(
    make_app: MakeApp,
) -> None:
    app = await make_app({"KEYTURN_MAX_UNPAID_PER_RENTER": "1"})
    await say(app, "LANG es")
    await say(app, "BOOK T1 mañana 10-14")
    await say(app, "SÍ")
    await say(app, "BOOK T2 mañana 10-14")
    [refused] = await say(app, "SÍ")
    assert "Ya tienes tantas reservas pendientes de pago como se permite (1)" in refused
    assert await Booking.all().count() == 1


@pytest.mark.parametrize("text", ["BOOK T1 31.12.9999 22-23", "BOOK T1 1 December 2027 10-14"])
async def test_a_start_beyond_the_horizon_gets_a_clear_answer_and_no_quote(
    make_app: MakeApp, text: str
) -> None:
    app = await make_app({"KEYTURN_BOOKING_HORIZON_DAYS": "30"})
    [answer] = await say(app, text)
    assert answer == "T1 can be booked at most 365 days ahead. Please pick an earlier day."
    [answer] = await say(app, "YES")
    assert "Reply YES" not in answer
    assert await Booking.all().count() == 0


async def test_the_horizon_is_the_locations_or_the_settings_default(
    make_app: MakeApp,
) -> None:
    app = await make_app({"KEYTURN_BOOKING_HORIZON_DAYS": "30"}, horizon=7)
    [answer] = await say(app, "BOOK T1 10 June 2026 10-14")
    assert answer == "T1 can be booked at most 7 days ahead. Please pick an earlier day."
    [quote] = await say(app, "BOOK T1 8 June 2026 10-14")
    assert "Reply YES" in quote
    # Altstadt's file sets no horizon: the setting's 30 days hold there.
    [answer] = await say(app, "BOOK B1 5 July 2026 10-14")
    assert answer == "B1 can be booked at most 30 days ahead. Please pick an earlier day."
    [quote] = await say(app, "BOOK B1 1 July 2026 10-14")
    assert "Reply YES" in quote or "JA" in quote


async def test_yes_at_once_on_two_channels_of_one_renter_stays_within_the_limit(
    make_app: MakeApp,
) -> None:
    """The same phone on SMS and WhatsApp: two conversations, one renter, turns that run at
    the same time. The hold's own transaction counts again, under the renter's row lock."""
    _, runtime = await make_app({"KEYTURN_MAX_UNPAID_PER_RENTER": "1"})
    now = runtime.clock.now()
    for channel, code in (("sms", "T1"), ("whatsapp", "T2")):
        await runtime.engine.handle(
            inbound(f"BOOK {code} tomorrow 10-14", channel=channel, address=ADDRESS, at=now)
        )
    await asyncio.gather(
        *(
            runtime.engine.handle(inbound("YES", channel=channel, address=ADDRESS, at=now))
            for channel in ("sms", "whatsapp")
        )
    )
    assert await Renter.all().count() == 1
    assert await Booking.filter(state=BookingState.AWAITING_PAYMENT).count() == 1
    replies = [m.body for m in await Message.filter(direction="out").order_by("id")][-2:]
    assert sum("I am holding" in reply for reply in replies) == 1
    assert sum("as one renter may (1)" in reply for reply in replies) == 1


async def test_yes_to_a_quote_whose_time_has_passed_holds_nothing(make_app: MakeApp) -> None:
    app = await make_app()
    _, runtime = app
    [quote] = await say(app, "BOOK T1 tomorrow 10-14")
    assert "Reply YES" in quote
    runtime.clock.current += timedelta(days=3)
    [answer] = await say(app, "YES")
    assert answer == "That time has already passed. When would you like it?"
    assert await Booking.all().count() == 0
    [again] = await say(app, "tomorrow 10-14")
    assert "Reply YES" in again, "asked when, the renter says it for the same item"
