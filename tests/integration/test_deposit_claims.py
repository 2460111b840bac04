"""An operator's deposit claim (``keyturn deposits claim``: the claim's call, then its record
committed in a unit of work) against the fake Stripe: one claim is one charge, whatever
happened to an earlier attempt's record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from flows.payments import CheckoutRequest
from flows.staging import run_unit
from storage.models import Asset, Booking, BookingState, Payment, Renter
from storage.money import Money
from tests.conftest import FakeClock
from tests.integration.conftest import END, START
from tests.integration.stripe_world import PHONE, World, stripe_world
from tests.support import rental_times


@pytest.fixture
async def world(database: str, clock: FakeClock) -> AsyncIterator[World]:
    async with stripe_world(database, clock) as started:
        yield started


async def card_on_file(world: World) -> Booking:
    """KT1001, confirmed, a long rental's deposit of $200 kept as the renter's saved card (paid
    for at a Stripe checkout that saved it)."""
    checkout = await world.runtime.payments.create_checkout(
        CheckoutRequest(
            booking_reference="KT1001",
            amount=Money(5000, "USD"),
            description="T1",
            expires_at=world.clock.now() + timedelta(hours=1),
            success_url="https://keyturn.example/paid",
            cancel_url="https://keyturn.example/paid?cancelled=1",
            idempotency_key="checkout-kt1001",
            save_card=True,
        )
    )
    world.stripe.complete(checkout.session_id)
    intent = world.stripe.payment_intents[
        str(world.stripe.sessions[checkout.session_id]["payment_intent"])
    ]
    asset = await Asset.get(code="T1")
    booking = await Booking.create(
        reference="KT1001",
        renter=await Renter.create(phone=PHONE),
        asset=asset,
        **await rental_times(asset.id, START, END),
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=5000,
        deposit_cents=20000,
    )
    await Payment.create(
        booking=booking,
        provider="stripe",
        purpose="deposit",
        amount_cents=20000,
        currency="USD",
        status="card_on_file",
        idempotency_key="deposit:KT1001",
        details={"customer": intent["customer"], "payment_method": intent["payment_method"]},
    )
    return booking


def charged(world: World) -> list[int]:
    """What Stripe charged besides the rental's checkout, in cents."""
    return [int(i["amount"]) for i in world.stripe.payment_intents.values() if i["amount"] != 5000]


async def test_a_claim_whose_record_was_lost_and_claimed_again_with_another_amount_charges_once(
    world: World,
) -> None:
    booking = await card_on_file(world)
    journey, now = world.runtime.journey, world.clock.now()
    # The operator claims $25; the card is charged, and the claim's record never commits.
    await journey.claim_deposit(booking.reference, Money(2500, "USD"), actor="operator")
    # Told nothing, they claim again, $40 this time: refused, the card is not charged again.
    with pytest.raises(ValueError, match="same amount"):
        await journey.claim_deposit(booking.reference, Money(4000, "USD"), actor="operator")
    assert charged(world) == [2500]
    # The same claim again is the one charge, recorded now.
    claimed, record = await journey.claim_deposit(
        booking.reference, Money(2500, "USD"), actor="operator"
    )
    await run_unit(record, now)
    assert claimed.amount == Money(2500, "USD") and claimed.paid
    assert charged(world) == [2500]
    assert [p.amount_cents for p in await Payment.filter(booking=booking, purpose="claim")] == [
        2500
    ]
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "claimed"


async def test_two_claims_at_once_record_one(world: World) -> None:
    """Two operators claim the same amount at the same moment: one charge, one claim recorded,
    and the second is told it was claimed meanwhile."""
    booking = await card_on_file(world)
    journey, now = world.runtime.journey, world.clock.now()
    _, first = await journey.claim_deposit(booking.reference, Money(2500, "USD"), actor="ana")
    _, second = await journey.claim_deposit(booking.reference, Money(2500, "USD"), actor="jonas")
    await run_unit(first, now)
    with pytest.raises(LookupError, match="claimed or released meanwhile"):
        await run_unit(second, now)
    assert [p.amount_cents for p in await Payment.filter(booking=booking, purpose="claim")] == [
        2500
    ]
    assert charged(world) == [2500]
