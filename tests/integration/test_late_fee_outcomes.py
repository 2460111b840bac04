"""Every way a late return's fee can end, through the dialog, the signed Stripe webhooks and the
fake Stripe: charged off-session, charged but still processing (then succeeded or failed),
declined, paid by link, its link run out; with and without a deposit. The renter is told
"charged" only once Stripe says the money moved, and has exactly one receipt, showing the fee.
A charge still processing is decided whether Stripe's outcome event comes before Keyturn
recorded the charge, after it, or never: Keyturn reads the charge back until it is decided."""

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
    """The late fee's off-session PaymentIntent: the one no checkout made, not a hold."""
    checkouts = {session["payment_intent"] for session in world.stripe.sessions.values()}
    [charge] = [
        intent
        for intent in world.stripe.payment_intents.values()
        if intent["capture_method"] != "manual" and intent["id"] not in checkouts
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


async def told_charged() -> int:
    return sum(CHARGED in text for text in await texts())


async def after(world: World, delta: timedelta) -> None:
    """``delta`` later, what fell due run."""
    world.clock.advance(delta)
    await settle(world.runtime)


async def assert_settled(booking: Booking, *, paid: bool) -> None:
    """What the renter sees of a processing fee once decided: charged (told once, with the
    receipt) or brought to a payment link (no receipt yet)."""
    fee = await Payment.get(booking_id=booking.id, purpose="late_fee", status__not="open")
    told = await texts()
    if paid:
        assert fee.status == "paid"
        assert await told_charged() == 1
        [receipt] = await receipts()
        assert "Late fee: $10.00, paid" in receipt
    else:
        assert fee.status == "declined"
        assert sum("confirm the late fee of $10.00" in text for text in told) == 1
        assert await told_charged() == 0
        assert await receipts() == []


@pytest.mark.parametrize("succeed", [True, False], ids=["succeeded", "failed"])
async def test_an_outcome_event_that_beats_the_charges_answer_is_not_lost(
    world: World, succeed: bool
) -> None:
    """Stripe's webhook reaches Keyturn before its HTTP answer does: the event finds no
    charge recorded yet, and the charge is still decided, soon after it is."""
    booking = await returned_late(world, "S1")
    early: list[int] = []

    async def decided_before_the_answer(intent: str) -> None:
        early.append(await world.deliver(world.stripe.finish_processing(intent, succeed=succeed)))

    world.stripe.process_slowly(saved_card(world), before_answering=decided_before_the_answer)
    await back_late(world, booking)
    assert early == [200]
    intent = off_session_charge(world)
    assert world.stripe.payment_intents[intent]["metadata"] == {
        "booking": booking.reference,
        "purpose": "late_fee",
    }
    assert (await Payment.get(booking_id=booking.id, purpose="late_fee")).status == "created"
    assert await told_charged() == 0

    await after(world, timedelta(minutes=1))
    await assert_settled(booking, paid=succeed)
    await after(world, timedelta(days=4))
    await assert_settled(booking, paid=succeed)
    assert not await OpsAlert.filter(kind="late_fee_processing").exists()


@pytest.mark.parametrize("succeed", [True, False], ids=["succeeded", "failed"])
async def test_a_processing_late_fee_is_decided_with_no_webhook_ever(
    world: World, succeed: bool
) -> None:
    booking = await returned_late(world, "S1")
    world.stripe.process_slowly(saved_card(world))
    await back_late(world, booking)
    intent = off_session_charge(world)

    await after(world, timedelta(minutes=10))  # read back twice: still processing
    assert (await Payment.get(booking_id=booking.id, purpose="late_fee")).status == "created"
    assert await told_charged() == 0
    world.stripe.finish_processing(intent, succeed=succeed)  # its event is never delivered
    await after(world, timedelta(minutes=30))
    await assert_settled(booking, paid=succeed)


@pytest.mark.parametrize("succeed", [True, False], ids=["succeeded", "failed"])
@pytest.mark.parametrize("first", ["webhook", "read_back"])
async def test_the_webhook_and_the_read_back_settle_a_late_fee_once(
    world: World, first: str, succeed: bool
) -> None:
    booking = await returned_late(world, "S1")
    world.stripe.process_slowly(saved_card(world))
    await back_late(world, booking)
    delivery = world.stripe.finish_processing(off_session_charge(world), succeed=succeed)

    if first == "webhook":
        assert await world.deliver(delivery) == 200
        await settle(world.runtime)
        await assert_settled(booking, paid=succeed)
        await after(world, timedelta(hours=1))
    else:
        await after(world, timedelta(minutes=1))
        await assert_settled(booking, paid=succeed)
        assert await world.deliver(delivery) == 200  # Stripe's event, late
        await settle(world.runtime)
    await assert_settled(booking, paid=succeed)
    assert not await OpsAlert.filter(kind="payment_failed").exists()


async def test_a_late_fee_still_processing_for_days_alerts_ops_once_and_is_still_decided(
    world: World,
) -> None:
    booking = await returned_late(world, "S1")
    world.stripe.process_slowly(saved_card(world))
    await back_late(world, booking)

    for _ in range(10):  # five days
        await after(world, timedelta(hours=12))
    [alert] = await OpsAlert.filter(kind="late_fee_processing")
    assert alert.params["booking"] == booking.reference
    assert alert.occurrences == 1
    assert await told_charged() == 0
    assert await receipts() == []

    world.stripe.finish_processing(off_session_charge(world))  # its event lost
    await after(world, timedelta(hours=12))
    await assert_settled(booking, paid=True)
