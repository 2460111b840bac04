"""A question Keyturn asks later supersedes one the renter left open: their YES answers it."""

from __future__ import annotations

from bot.cli import DEMO_INVENTORY
from tests.e2e import test_channel_journeys
from tests.e2e.test_channel_journeys import TwilioRenter, World
from tests.e2e.test_handover_journeys import (
    T1_ASKS,
    apply_demo_inventory,
    at_pin_time,
)
from tests.e2e.test_return_release_attacks import confirmed_t1

world = test_channel_journeys.world
DEMO = DEMO_INVENTORY.read_text(encoding="utf-8")


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
