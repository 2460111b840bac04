"""Workers keep the inventory renters see in memory for a few seconds: an operator's change
(an item taken out of service, a new price) reaches renters within that time, and booking an item
taken out of service is refused."""

from __future__ import annotations

from bot.app import Runtime
from flows.inventory_cache import INVENTORY_TTL
from storage.models import Asset, Booking, Message
from tests.conftest import FakeClock
from tests.support import inbound


class Ticks:
    """The cache's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def say(runtime: Runtime, clock: FakeClock, text: str) -> str:
    await runtime.engine.handle(inbound(text, at=clock.now()))
    message = await Message.filter(direction="out").order_by("-id").first()
    assert message is not None
    return "\n".join([message.body, *(label for _, label in message.choices)])


async def test_a_change_reaches_renters_within_the_cache_time(
    runtime: Runtime, clock: FakeClock
) -> None:
    ticks = Ticks()
    runtime.journey.inventory.monotonic = ticks
    await say(runtime, clock, "hi")
    items = await say(runtime, clock, "2")  # Harbor Yard
    assert "T1 Utility trailer 6x10" in items and "$12.50/hour" in items
    await Asset.filter(code="T1").update(active=False)
    await Asset.filter(code="T2").update(price_per_hour_cents=1700)
    ticks.now += INVENTORY_TTL - 0.1
    assert "T1 Utility trailer" in await say(runtime, clock, "0") + await say(runtime, clock, "2")
    ticks.now += 0.2
    await say(runtime, clock, "0")
    items = await say(runtime, clock, "2")
    assert "T1" not in items, "taken out of service: no longer offered"
    assert "T2 Enclosed cargo trailer 5x8 · $17.00/hour" in items
    refused = await say(runtime, clock, "BOOK T1 tomorrow 10-14")
    assert "I do not know an item called T1" in refused


async def test_a_quote_for_an_item_taken_out_of_service_is_not_booked(
    runtime: Runtime, clock: FakeClock
) -> None:
    ticks = Ticks()
    runtime.journey.inventory.monotonic = ticks
    quote = await say(runtime, clock, "BOOK T1 tomorrow 10-14")
    assert "Reply YES" in quote
    await Asset.filter(code="T1").update(active=False)
    # Within the cache's lifetime: YES reads the item from the database.
    assert "I do not know an item called T1" in await say(runtime, clock, "YES")
    assert await Booking.all().count() == 0


async def test_an_item_added_since_the_last_read_is_found_by_id(
    runtime: Runtime, clock: FakeClock
) -> None:
    cache = runtime.journey.inventory
    cache.monotonic = Ticks()
    await cache.open_locations()
    t1 = await Asset.get(code="T1")
    added = await Asset.create(code="T9", label="Flatbed trailer", location_id=t1.location_id)
    found = await cache.asset_by_id(added.id)
    assert (found.code, found.location.slug) == ("T9", "harbor")
