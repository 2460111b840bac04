"""The deposit follows the return, through the dialog, the signed Stripe webhooks and the fake
Stripe: a rental that ends by the clock keeps its hold; the hold is released only once the
return is confirmed and its damage review is over; damage claimed within the review is
captured; a late return's fee is charged off-session on the card saved at checkout (a link
when the bank wants the renter); a hold about to lapse becomes the card on file; the receipt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from flows.effects import Outcome
from flows.returns import note_return_checklist
from flows.staging import run_unit
from storage.models import Asset, Booking, BookingState, Message, OpsAlert, Payment, Renter
from storage.uow import UnitOfWork
from tests.conftest import FakeClock
from tests.fakes.stripe import AUTHENTICATION_CARD, VISA
from tests.integration.conftest import settle
from tests.integration.stripe_world import World, stripe_world

REVIEW = timedelta(hours=12)  # KEYTURN_DAMAGE_REVIEW_HOURS' default


@pytest.fixture
async def world(database: str, clock: FakeClock) -> AsyncIterator[World]:
    async with stripe_world(database, clock) as started:
        yield started


async def paid_booking(world: World, code: str = "T1", *, card: str = VISA) -> Booking:
    """A verified renter books ``code`` tomorrow 10-14 and pays at the Stripe checkout with
    ``card``; the booking is confirmed (its deposit held where it has one)."""
    await world.say(f"BOOK {code} tomorrow 10-14")
    await Renter.all().update(verified_at=world.clock.now())  # verified before: no ID asked
    await world.say("YES")
    [session_id] = list(world.stripe.sessions)
    assert await world.deliver(world.stripe.complete(session_id, card=card)) == 200
    await settle(world.runtime)
    booking = await Booking.get()
    assert booking.state == BookingState.CONFIRMED
    return booking


async def late_fee_per_hour(code: str, cents: int) -> None:
    """Before the first message: the inventory cache reads the item on first use."""
    await Asset.filter(code=code).update(late_fee_per_hour_cents=cents, late_grace_minutes=15)


async def advance_to(world: World, moment_delta: timedelta, booking: Booking) -> None:
    """Move the clock to the booking's end plus ``moment_delta`` and run what fell due."""
    target = booking.end_at + moment_delta
    while world.clock.now() < target:
        world.clock.advance(min(timedelta(hours=6), target - world.clock.now()))
        await settle(world.runtime)


async def confirm_return(world: World, booking: Booking) -> None:
    """The renter's return checklist is done (DONE), as the dialog's runner records it."""
    rules = world.runtime.journey.settings.returns
    now = world.clock.now()

    async def done(conn: UnitOfWork) -> Outcome:
        return await note_return_checklist(conn, booking.id, now, rules)

    await run_unit(done, now)
    await settle(world.runtime)


def cancels(world: World, intent: str) -> int:
    return len(world.stripe.posts(f"/v1/payment_intents/{intent}/cancel"))


async def texts() -> list[str]:
    return [m.body for m in await Message.filter(direction="out").order_by("id")]


async def deposit_of(booking: Booking) -> Payment:
    return await Payment.get(booking_id=booking.id, purpose="deposit")


async def test_a_rental_ended_by_the_clock_keeps_its_hold_until_return_and_review(
    world: World,
) -> None:
    booking = await paid_booking(world)
    deposit = await deposit_of(booking)
    intent = str(deposit.provider_ref)
    assert world.stripe.payment_intents[intent]["status"] == "requires_capture"

    await advance_to(world, timedelta(hours=3), booking)  # ended by the clock, not returned
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    assert cancels(world, intent) == 0
    assert (await deposit_of(booking)).status == "held"
    assert world.stripe.payment_intents[intent]["status"] == "requires_capture"

    await confirm_return(world, booking)
    world.clock.advance(REVIEW - timedelta(minutes=1))
    await settle(world.runtime)
    assert cancels(world, intent) == 0, "released before the damage review ended"
    assert not any("Receipt" in text for text in await texts())

    world.clock.advance(timedelta(minutes=2))
    await settle(world.runtime)
    assert cancels(world, intent) == 1
    assert world.stripe.payment_intents[intent]["status"] == "canceled"
    assert (await deposit_of(booking)).status == "released"
    receipt = (await texts())[-1]
    assert receipt.startswith(f"Receipt for booking {booking.reference}:")
    assert "Price: $50.00" in receipt
    assert "Deposit of $100.00: released" in receipt
    assert "Late fee" not in receipt
    assert "Rental: " in receipt and "Returned: " in receipt


async def test_damage_claimed_within_the_review_is_captured_and_never_released(
    world: World,
) -> None:
    booking = await paid_booking(world)
    intent = str((await deposit_of(booking)).provider_ref)
    await advance_to(world, timedelta(minutes=5), booking)
    await confirm_return(world, booking)
    world.clock.advance(timedelta(hours=2))
    claimed, record = await world.runtime.journey.claim_deposit(
        booking.reference, None, actor="owner"
    )
    await run_unit(record, world.clock.now())
    assert claimed.amount.minor == 10000 and claimed.paid

    world.clock.advance(REVIEW)
    await settle(world.runtime)
    assert cancels(world, intent) == 0
    assert world.stripe.payment_intents[intent]["status"] == "succeeded"
    assert world.stripe.payment_intents[intent]["amount_received"] == 10000
    assert (await deposit_of(booking)).status == "claimed"
    receipt = (await texts())[-1]
    assert "Deposit of $100.00: $100.00 kept for damage" in receipt


async def test_a_late_return_is_charged_off_session_on_the_card_saved_at_checkout(
    world: World,
) -> None:
    await late_fee_per_hour("S1", 1000)  # S1 has no deposit: the late fee alone saves the card
    booking = await paid_booking(world, "S1")
    [session_id] = list(world.stripe.sessions)
    params = world.stripe.session_params[session_id]
    assert params["payment_intent_data"]["setup_future_usage"] == "off_session"
    rental_intent = world.stripe.payment_intents[
        str(world.stripe.sessions[session_id]["payment_intent"])
    ]

    await advance_to(world, timedelta(minutes=90), booking)  # 1 h 30 late: two started hours
    await confirm_return(world, booking)

    [charge] = [
        c
        for c in world.stripe.posts("/v1/payment_intents")
        if c.params.get("off_session") == "true"
    ]
    assert charge.params["amount"] == "2000"
    assert charge.params["customer"] == rental_intent["customer"]
    assert charge.params["payment_method"] == rental_intent["payment_method"]
    fee = await Payment.get(booking_id=booking.id, purpose="late_fee")
    assert fee.status == "paid" and fee.amount_cents == 2000
    assert world.stripe.payment_intents[str(fee.provider_ref)]["status"] == "succeeded"
    told = await texts()
    assert "a late fee of $20.00 was charged" in told[-2]
    assert "Late fee: $20.00, paid" in told[-1]
    assert "Deposit" not in told[-1]


async def test_a_card_that_wants_authentication_gets_a_payment_link_for_the_fee(
    world: World,
) -> None:
    await late_fee_per_hour("S1", 1000)
    booking = await paid_booking(world, "S1", card=AUTHENTICATION_CARD)
    await advance_to(world, timedelta(minutes=30), booking)  # past the grace: one hour
    await confirm_return(world, booking)

    [refused] = [e for e in world.stripe.events if e["type"] == "payment_intent.payment_failed"]
    intent = refused["data"]["object"]
    assert intent["last_payment_error"]["code"] == "authentication_required"
    assert intent["status"] == "requires_payment_method"
    [link] = [
        s for s, p in world.stripe.session_params.items() if p["metadata"]["purpose"] == "late_fee"
    ]
    assert world.stripe.sessions[link]["amount_total"] == 1000
    told = await texts()
    assert "confirm the late fee of $10.00" in told[-1]
    assert str(world.stripe.sessions[link]["url"]) in told[-1]
    assert not any("Receipt" in text for text in told)

    assert await world.deliver(world.stripe.complete(link)) == 200
    await settle(world.runtime)
    fee = await Payment.get(booking_id=booking.id, purpose="late_fee")
    assert fee.status == "paid"
    told = await texts()
    assert "the late fee of $10.00 for booking" in told[-2]
    assert "Late fee: $10.00, paid" in told[-1]


async def test_a_declined_card_alerts_ops_and_the_renter_hears_a_person_will_call(
    world: World,
) -> None:
    await late_fee_per_hour("S1", 1000)
    booking = await paid_booking(world, "S1")
    [session_id] = list(world.stripe.sessions)
    rental = world.stripe.payment_intents[str(world.stripe.sessions[session_id]["payment_intent"])]
    world.stripe.decline(rental["payment_method"])
    await advance_to(world, timedelta(minutes=30), booking)
    await confirm_return(world, booking)

    assert (await Payment.get(booking_id=booking.id, purpose="late_fee")).status == "declined"
    assert await OpsAlert.filter(kind="late_fee_failed").exists()
    told = await texts()
    assert "could not be charged to your card. A person from our team" in told[-2]
    assert "Late fee: $10.00, not paid yet" in told[-1]


async def test_a_hold_about_to_lapse_becomes_the_card_on_file_and_the_renter_is_told(
    world: World,
) -> None:
    booking = await paid_booking(world)
    deposit = await deposit_of(booking)
    intent = str(deposit.provider_ref)
    held_for = world.clock.now()
    await advance_to(world, timedelta(hours=1), booking)  # ended, never returned
    assert cancels(world, intent) == 0

    world.clock.advance(held_for + timedelta(days=6) - world.clock.now() + timedelta(minutes=1))
    await settle(world.runtime)
    assert cancels(world, intent) == 1
    assert (await deposit_of(booking)).status == "card_on_file"
    assert "hold of $100.00 for booking" in (await texts())[-1]

    # Damage found later: the card on file is charged off-session.
    claimed, record = await world.runtime.journey.claim_deposit(
        booking.reference, None, actor="owner"
    )
    await run_unit(record, world.clock.now())
    assert claimed.amount.minor == 10000 and claimed.paid
    [hold, charge] = world.stripe.posts("/v1/payment_intents")
    assert hold.params["capture_method"] == "manual"
    assert charge.params["amount"] == "10000" and "capture_method" not in charge.params
    assert charge.params["off_session"] == "true"
    assert charge.params["customer"] == deposit.details["customer"]


async def test_a_return_confirmed_before_the_lapse_releases_in_the_review_not_at_the_lapse(
    world: World,
) -> None:
    booking = await paid_booking(world)
    intent = str((await deposit_of(booking)).provider_ref)
    await advance_to(world, timedelta(minutes=20), booking)  # after the codes' end
    await confirm_return(world, booking)
    world.clock.advance(REVIEW)
    await settle(world.runtime)
    assert cancels(world, intent) == 1
    world.clock.advance(timedelta(days=7))
    await settle(world.runtime)
    assert cancels(world, intent) == 1
    assert (await deposit_of(booking)).status == "released"
    assert not any("hold of $100.00" in text for text in await texts())


async def test_a_rental_without_deposit_or_fee_has_its_receipt_at_the_return(
    world: World,
) -> None:
    booking = await paid_booking(world, "S1")
    await advance_to(world, timedelta(minutes=-30), booking)  # back early
    await confirm_return(world, booking)
    receipt = (await texts())[-1]
    assert receipt.startswith(f"Receipt for booking {booking.reference}:")
    assert "Price: $16.00" in receipt
    assert "Late fee" not in receipt and "Deposit" not in receipt


async def test_a_hold_whose_review_ends_before_it_lapses_is_released_by_the_review(
    world: World,
) -> None:
    booking = await paid_booking(world)
    intent = str((await deposit_of(booking)).provider_ref)
    held_at = world.clock.now()
    world.clock.advance(held_at + timedelta(days=5, hours=20) - world.clock.now())
    await settle(world.runtime)
    await confirm_return(world, booking)  # days late: the review ends 6 days 8 hours in

    world.clock.advance(held_at + timedelta(days=6, minutes=1) - world.clock.now())
    await settle(world.runtime)  # the lapse check: the review comes first, so it waits
    assert cancels(world, intent) == 0
    assert (await deposit_of(booking)).status == "held"

    world.clock.advance(held_at + timedelta(days=6, hours=8) - world.clock.now())
    await settle(world.runtime)
    world.clock.advance(timedelta(minutes=10))  # past the lapse check's second look
    await settle(world.runtime)
    [cancel] = world.stripe.posts(f"/v1/payment_intents/{intent}/cancel")
    assert cancel.idempotency_key == f"release:{booking.reference}"
    assert (await deposit_of(booking)).status == "released"
    assert not any("hold of $100.00" in text for text in await texts())


async def test_the_receipt_is_in_the_renters_language(world: World) -> None:
    await world.say("LANG de")
    booking = await paid_booking(world, "S1")
    await advance_to(world, timedelta(minutes=-30), booking)
    await confirm_return(world, booking)
    receipt = (await texts())[-1]
    assert receipt.startswith(f"Beleg für die Buchung {booking.reference}:")
    assert "Preis: 16,00\xa0$" in receipt, receipt
    assert "Miete: " in receipt and "Zurückgegeben: " in receipt


async def test_a_card_on_file_is_released_by_the_review_with_no_call_to_stripe(
    world: World,
) -> None:
    booking = await paid_booking(world)
    intent = str((await deposit_of(booking)).provider_ref)
    held_at = world.clock.now()
    world.clock.advance(held_at + timedelta(days=6, minutes=1) - world.clock.now())
    await settle(world.runtime)
    assert (await deposit_of(booking)).status == "card_on_file"
    calls = len(world.stripe.calls)

    await confirm_return(world, booking)
    world.clock.advance(REVIEW)
    await settle(world.runtime)
    assert (await deposit_of(booking)).status == "released"
    assert len(world.stripe.calls) == calls, "nothing is held at Stripe any more"
    assert cancels(world, intent) == 1
    assert "Deposit of $100.00: released" in (await texts())[-1]
