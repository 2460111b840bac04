"""Every way a late return's fee can end, through the dialog, the signed Stripe webhooks and the
fake Stripe: charged off-session, charged but still processing (then succeeded or failed),
declined, paid by link, its link run out; with and without a deposit. The renter is told
"charged" only once Stripe says the money moved, and has exactly one receipt, showing the fee."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from storage.models import Booking, OpsAlert, Payment
from tests.conftest import FakeClock
from tests.integration.conftest import settle
from tests.integration.stripe_world import World, stripe_world
from tests.integration.test_deposit_follows_return import (
    REVIEW,
    advance_to,
    confirm_return,
    late_fee_per_hour,
    paid_booking,
    texts,
)

CHARGED = "a late fee of $10.00 was charged"


@pytest.fixture
async def world(database: str, clock: FakeClock) -> AsyncIterator[World]:
    async with stripe_world(database, clock) as started:
        yield started


async def receipts() -> list[str]:
    return [text for text in await texts() if text.startswith("Receipt for booking")]


def saved_card(world: World) -> str:
    """The card the rental's checkout saved."""
    rental_session = next(
        s for s, p in world.stripe.session_params.items() if p["metadata"]["purpose"] == "rental"
    )
    intent = world.stripe.sessions[rental_session]["payment_intent"]
    return str(world.stripe.payment_intents[str(intent)]["payment_method"])


def off_session_charge(world: World) -> str:
    """The late fee's off-session PaymentIntent."""
    [charge] = [
        intent
        for intent in world.stripe.payment_intents.values()
        if intent["capture_method"] != "manual" and not intent["metadata"]
    ]
    return str(charge["id"])


def fee_link(world: World) -> str:
    [link] = [
        s for s, p in world.stripe.session_params.items() if p["metadata"]["purpose"] == "late_fee"
    ]
    return link


async def returned_late(world: World, code: str) -> Booking:
    """``code``, whose late fee is $10.00 an hour, booked and paid (its deposit held)."""
    await late_fee_per_hour(code, 1000)
    return await paid_booking(world, code)


async def back_late(world: World, booking: Booking) -> None:
    """Returned 30 minutes after the booked end, past the grace."""
    await advance_to(world, timedelta(minutes=30), booking)  # one started hour
    await confirm_return(world, booking)


async def test_a_late_fee_still_processing_is_told_charged_only_once_stripe_says_it_succeeded(
    world: World,
) -> None:
    booking = await returned_late(world, "S1")  # no deposit
    world.stripe.process_slowly(saved_card(world))
    await back_late(world, booking)

    intent = off_session_charge(world)
    assert world.stripe.payment_intents[intent]["status"] == "processing"
    fee = await Payment.get(booking_id=booking.id, purpose="late_fee")
    assert fee.status != "paid"
    assert not any(CHARGED in text for text in await texts())
    assert await receipts() == [], "a receipt waits for the fee's outcome"

    assert await world.deliver(world.stripe.finish_processing(intent)) == 200
    await settle(world.runtime)
    assert (await Payment.get(id=fee.id)).status == "paid"
    told = await texts()
    assert CHARGED in told[-2]
    [receipt] = await receipts()
    assert "Late fee: $10.00, paid" in receipt

    # Stripe delivers it again, or another intent event follows: nothing more.
    assert await world.deliver(world.stripe.delivery("payment_intent.succeeded", intent)) == 200
    await settle(world.runtime)
    assert len(await receipts()) == 1
    assert sum(CHARGED in text for text in await texts()) == 1


async def test_a_processing_late_fee_that_fails_brings_the_renter_to_a_payment_link(
    world: World,
) -> None:
    booking = await returned_late(world, "S1")
    world.stripe.process_slowly(saved_card(world))
    await back_late(world, booking)
    intent = off_session_charge(world)

    assert await world.deliver(world.stripe.finish_processing(intent, succeed=False)) == 200
    await settle(world.runtime)
    charge = await Payment.get(booking_id=booking.id, purpose="late_fee", provider_ref=intent)
    assert charge.status == "declined"
    link = fee_link(world)
    assert world.stripe.sessions[link]["amount_total"] == 1000
    told = await texts()
    assert "confirm the late fee of $10.00" in told[-1]
    assert str(world.stripe.sessions[link]["url"]) in told[-1]
    assert not any(CHARGED in text for text in told)
    assert await receipts() == []

    assert await world.deliver(world.stripe.complete(link)) == 200
    await settle(world.runtime)
    assert "the late fee of $10.00 for booking" in (await texts())[-2]
    [receipt] = await receipts()
    assert "Late fee: $10.00, paid" in receipt


async def test_a_late_fee_link_that_runs_out_unpaid_ends_with_the_receipt(world: World) -> None:
    booking = await returned_late(world, "S1")
    world.stripe.decline(saved_card(world), "authentication_required")
    await back_late(world, booking)
    assert await receipts() == []

    assert await world.deliver(world.stripe.expire(fee_link(world))) == 200
    await settle(world.runtime)
    assert await OpsAlert.filter(kind="late_fee_failed").exists()
    [receipt] = await receipts()
    assert "Late fee: $10.00, not paid yet" in receipt

    world.clock.advance(REVIEW)
    await settle(world.runtime)
    assert len(await receipts()) == 1


@pytest.mark.parametrize(
    ("path", "late_fee_line"),
    [
        ("charged", "Late fee: $10.00, paid"),
        ("declined", "Late fee: $10.00, not paid yet"),
        ("link_paid", "Late fee: $10.00, paid"),
        ("link_unpaid", "Late fee: $10.00, not paid yet"),
        ("processing_succeeded", "Late fee: $10.00, paid"),
    ],
)
async def test_with_a_deposit_every_late_fee_ends_with_one_receipt_after_the_review(
    world: World, path: str, late_fee_line: str
) -> None:
    booking = await returned_late(world, "T1")  # deposit $100.00, held
    card = saved_card(world)
    if path == "declined":
        world.stripe.decline(card)
    elif path.startswith("link"):
        world.stripe.decline(card, "authentication_required")
    elif path.startswith("processing"):
        world.stripe.process_slowly(card)
    await back_late(world, booking)
    if path == "link_paid":
        assert await world.deliver(world.stripe.complete(fee_link(world))) == 200
    elif path == "processing_succeeded":
        assert not any(CHARGED in text for text in await texts())
        delivery = world.stripe.finish_processing(off_session_charge(world))
        assert await world.deliver(delivery) == 200
    await settle(world.runtime)
    assert await receipts() == [], "the receipt waits for the deposit's fate"

    world.clock.advance(REVIEW + timedelta(minutes=1))
    await settle(world.runtime)
    if path == "link_unpaid":  # its link outlives the review
        assert await world.deliver(world.stripe.expire(fee_link(world))) == 200
        await settle(world.runtime)
    [receipt] = await receipts()
    assert late_fee_line in receipt
    assert "Deposit of $100.00: released" in receipt
    told = await texts()
    assert sum(CHARGED in text for text in told) == (path in ("charged", "processing_succeeded"))
