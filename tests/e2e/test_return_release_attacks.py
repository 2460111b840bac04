"""The deposit is released only once the renter's codes no longer open: not while an extension
keeps them, not while an offline keypad still holds a code Keyturn has asked to remove."""

from __future__ import annotations

from datetime import timedelta

from bot.cli import DEMO_INVENTORY
from storage.models import AccessCode, AccessCodeState, Booking, IdentityCheck, Lock, Payment
from tests.e2e import test_channel_journeys
from tests.e2e.test_channel_journeys import TwilioRenter, World, approve, checkout_session
from tests.e2e.test_handover_journeys import (
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


async def test_an_extension_paid_after_an_early_return_keeps_the_deposit_while_the_code_opens(
    world: World,
) -> None:
    """The renter asked to extend, then brought T1 back early (it keeps its codes to the end)
    and paid the extension afterwards: the lock opens for them past the damage review counted
    from the old end, so the deposit must still be held while their code opens. EXTEND once
    the return is noted is refused."""
    renter = TwilioRenter(world, whatsapp=True)
    booking = await confirmed_t1(world, renter)
    await at_pin_time(world, booking)
    await world.at(booking.start_at + timedelta(hours=1))
    await renter.inbox()
    [quote] = await renter.say("EXTEND 13h")
    assert "Reply YES" in quote, quote
    _paying, link = await renter.say("YES")
    await renter.say("RETURN")
    _noted, confirmed = await renter.say("DONE")
    assert "confirmed" in confirmed
    assert await renter.say("EXTEND 2h") == [
        f"Booking {booking.reference} is returned, so it can no longer be extended."
        " Send BOOK to rent again."
    ]
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
    await world.at(opens_until + review)
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "released"


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
    assert "being switched off now" in noted and "confirmed" in confirmed
    review = world.runtime.journey.settings.returns.damage_review
    await world.at(world.clock.now() + review + timedelta(minutes=1))
    opens = await world.keypad().try_keypad(lock.device_id, pins["harbor-t1"], world.clock.now())
    assert opens, "the offline keypad still holds the renter's code"
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "held", f"deposit {deposit.status} while the renter's code opens T1"
    world.keypad().offline.discard(lock.device_id)  # back online: the code comes off
    await world.at(world.clock.now() + timedelta(hours=1))
    assert not await world.keypad().try_keypad(lock.device_id, pins["harbor-t1"], world.clock.now())
    await world.at(world.clock.now() + review)
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "released"
