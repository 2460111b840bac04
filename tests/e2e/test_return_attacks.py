"""Attacks on the return from outside: a renter, a late provider, a signed Traccar event that
should not move a booking. Each test asserts what the renter or the operator would check."""

from __future__ import annotations

from datetime import timedelta

from bot.cli import DEMO_INVENTORY
from storage.models import AccessCode, AccessCodeState, Booking, IdentityCheck, Lock, Payment
from tests.e2e import test_channel_journeys
from tests.e2e.test_channel_journeys import TwilioRenter, World, approve, checkout_session
from tests.e2e.test_handover_journeys import (
    T1_ASKS,
    apply_demo_inventory,
    at_pin_time,
    pins_of,
)

world = test_channel_journeys.world
DEMO = DEMO_INVENTORY.read_text(encoding="utf-8")


async def confirmed_t1(world: World, renter: TwilioRenter) -> Booking:
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await renter.inbox()
    await renter.send_id()
    assert await approve(world, (await IdentityCheck.get()).id)
    await renter.inbox()
    return await Booking.get()


async def test_an_extension_after_an_early_return_keeps_the_deposit_while_the_code_opens(
    world: World,
) -> None:
    """Returned early (T1 keeps its codes to the end), then extended: the lock opens for the
    renter past the damage review counted from the old end, so the deposit must still be held
    while the renter's code still opens."""
    renter = TwilioRenter(world, whatsapp=True)
    booking = await confirmed_t1(world, renter)
    await at_pin_time(world, booking)
    await world.at(booking.start_at + timedelta(hours=1))
    await renter.inbox()
    await renter.say("RETURN")
    _noted, confirmed = await renter.say("DONE")
    assert "confirmed" in confirmed
    [quote] = await renter.say("EXTEND 13h")
    assert "Reply YES" in quote, quote
    _paying, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await world.run()
    await booking.refresh_from_db()
    assert booking.end_at == booking.start_at + timedelta(hours=17)
    review = world.runtime.journey.settings.returns.damage_review
    old_codes_end = booking.start_at + timedelta(hours=4, minutes=15)
    await world.at(old_codes_end + review + timedelta(minutes=1))
    live = await AccessCode.filter(booking=booking, state=AccessCodeState.SET)
    opens_until = max(c.ends_at for c in live)
    assert opens_until > world.clock.now(), "the renter's code still opens the trailer"
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "held", (
        f"deposit {deposit.status} while the renter's code opens until {opens_until}"
    )


async def test_an_early_return_on_an_offline_lock_keeps_the_deposit_while_the_code_opens(
    world: World,
) -> None:
    """T1 ends its codes at an early return, but its lock is offline when the renter says DONE
    on the first morning of a three-day rental: the code is still on the keypad and opens it
    for days. The deposit must not be released while it does."""
    demo = DEMO_INVENTORY.read_text(encoding="utf-8")
    t1 = 'code = "T1"\n'
    await apply_demo_inventory(world, demo.replace(t1, t1 + "early_return_ends_codes = true\n"))
    renter = TwilioRenter(world, whatsapp=True)
    booking = await confirmed_t1(world, renter)
    await renter.say("EXTEND 3 days")
    _paying, link = await renter.say("YES")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    await world.run()
    await booking.refresh_from_db()
    assert booking.end_at - booking.start_at == timedelta(days=3, hours=4)
    await at_pin_time(world, booking)
    pins = await pins_of(world, booking)
    await world.at(booking.start_at + timedelta(hours=1))
    await renter.inbox()
    lock = await Lock.get(key="harbor-t1")
    world.keypad().offline.add(lock.device_id)
    await renter.say("RETURN")
    noted, confirmed = await renter.say("DONE")
    assert "switched off now" in noted and "confirmed" in confirmed
    review = world.runtime.journey.settings.returns.damage_review
    await world.at(world.clock.now() + review + timedelta(minutes=1))
    opens = await world.keypad().try_keypad(lock.device_id, pins["harbor-t1"], world.clock.now())
    assert opens, "the offline keypad still holds the renter's code"
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "held", f"deposit {deposit.status} while the renter's code opens T1"


async def test_yes_to_the_pickup_question_does_not_accept_a_cancel_quote_left_open(
    world: World,
) -> None:
    """The renter typed CANCEL an hour before the start and let the question be. At the start
    the pickup question comes, with YES and NO; the renter's YES answers it, and the rental
    under way is not cancelled by it."""
    await apply_demo_inventory(world, DEMO.replace('code = "T1"\n', T1_ASKS))
    renter = TwilioRenter(world, whatsapp=True)
    booking = await confirmed_t1(world, renter)
    await at_pin_time(world, booking)
    await renter.inbox()
    [cancel_quote] = await renter.say("CANCEL")
    assert "YES" in cancel_quote
    await world.at(booking.start_at)
    asked = "\n".join(await renter.inbox())
    assert "Question 1 of 1: Hitch locked?" in asked
    told = "\n".join(await renter.say("YES"))
    await booking.refresh_from_db()
    assert booking.state != "cancelled", f"YES to 'Hitch locked?' cancelled it: {told}"
    assert "pickup check" in told and "done" in told
