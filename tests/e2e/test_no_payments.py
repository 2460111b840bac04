"""``keyturn serve --no-payments``: a booking takes no payment or deposit and goes straight on
to the ID check and confirmation; nothing promises a payment link or a refund."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from flows.staging import stage_outcome
from storage.models import AccessCode, Booking, BookingState, Extension, OutboxEffect, Payment
from tests.e2e.sandbox_apps import MakeApp, sandbox_apps, say

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


@pytest.fixture
async def make_app(database: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    async with sandbox_apps(database, tmp_path) as make:
        yield make


async def test_a_booking_without_payments_is_confirmed_after_the_id(make_app: MakeApp) -> None:
    app = await make_app(take_payments=False)
    client, _ = app
    [quote] = await say(app, "BOOK T1 tomorrow 10-14")
    assert "Reply YES" in quote
    [ask_id] = await say(app, "YES")
    booking = await Booking.get()
    assert ask_id == (
        f"Booking {booking.reference} is reserved for you; no payment is taken here. To confirm "
        "it, please send a photo of your ID (driving licence, ID card or passport)."
    )
    assert booking.state == BookingState.AWAITING_ID
    assert (booking.price_cents, booking.deposit_cents, booking.hold_expires_at) == (0, 0, None)
    assert await Payment.all().count() == 0
    assert not await OutboxEffect.filter(kind__startswith="payment.").exists()
    [thanks] = await say(app, image=PNG, text="")
    assert "checking your ID" in thanks
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    decided = await client.post(
        f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True}
    )
    assert decided.status == 200
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED

    [extend_quote] = await say(app, "EXTEND 1h")
    assert "Reply YES" in extend_quote
    replies = await say(app, "YES")
    assert "Good. No payment is taken here for this extension." in replies
    assert not any("payment link" in reply for reply in replies)
    [cancel_quote] = await say(app, "CANCEL")
    assert "You get $0.00 back" in cancel_quote
    await say(app, "YES")
    await booking.refresh_from_db()
    assert booking.state == BookingState.CANCELLED
    assert await Payment.all().count() == 0


async def test_no_extension_gives_codes_before_the_id_or_after_a_cancellation(
    make_app: MakeApp,
) -> None:
    """With nothing to pay, an extension is applied at YES: it must never give a booking codes
    that its state does not allow (still awaiting its ID, or cancelled since the quote)."""
    app = await make_app(take_payments=False)
    client, runtime = app
    await say(app, "BOOK T1 tomorrow 10-14")
    await say(app, "YES")
    booking = await Booking.get()
    assert booking.state == BookingState.AWAITING_ID
    [refused] = await say(app, "EXTEND 1h")
    assert refused == f"Booking {booking.reference} can be extended once it is confirmed."
    await say(app, "YES")
    assert not await AccessCode.exists()

    await say(app, image=PNG, text="")
    [check] = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    await client.post(f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True})
    [extend_quote] = await say(app, "EXTEND 2h")
    assert "Reply YES" in extend_quote
    await booking.refresh_from_db()
    async with in_transaction() as conn:  # an operator cancels meanwhile
        outcome = await runtime.journey.cancel_booking(
            conn, booking, actor="staff:1", now=runtime.clock.now(), refund=None
        )
        await stage_outcome(conn, outcome, runtime.clock.now())
    replies = await say(app, "YES")
    stale = [r for r in replies if r.startswith("That extension is no longer possible")]
    off = [r for r in replies if "no longer opens anything" in r]  # its code is off the lock
    assert (len(stale), len(off), len(replies)) == (1, 1, 2), replies
    await booking.refresh_from_db()
    assert booking.state == BookingState.CANCELLED
    assert not await Extension.exists()
    live = await AccessCode.filter(
        booking=booking, state__in=("pending", "programming", "set")
    ).count()
    assert live == 0
