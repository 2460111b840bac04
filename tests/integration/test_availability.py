"""Alternatives offered when a slot is taken: the nearest free slots of the same length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.cli import DEMO_INVENTORY
from flows.bookings import alternatives
from flows.inventory import apply_inventory, load_inventory
from storage.models import Asset, Booking, BookingState, Renter
from tests.conftest import FakeClock
from tests.support import rental_times

DAY = datetime(2026, 6, 3, tzinfo=UTC)


async def _book(asset: Asset, renter: Renter, start: int, end: float, state: BookingState) -> None:
    await Booking.create(
        reference=f"KT{start}{end}{state}"[:12],
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, DAY + timedelta(hours=start), DAY + timedelta(hours=end)),
        state=state,
        currency="USD",
        price_cents=5000,
    )


async def test_the_nearest_free_slots_around_taken_ones_are_offered(
    database: str, clock: FakeClock
) -> None:
    await apply_inventory(load_inventory(DEMO_INVENTORY), now=clock.now())
    asset = await Asset.get(code="T1").prefetch_related("location")
    renter = await Renter.create(phone="+15550100009")
    await _book(asset, renter, 10, 14, BookingState.CONFIRMED)
    await _book(asset, renter, 14.5, 18.5, BookingState.AWAITING_PAYMENT)  # a held slot
    await _book(asset, renter, 6, 10, BookingState.CANCELLED)  # frees its slot
    wanted = (DAY + timedelta(hours=10), DAY + timedelta(hours=14))
    found = await alternatives(asset, *wanted, now=DAY)
    # Harbor's 15-minute buffers: 5:30-9:30 takes until 9:45, where the 10:00 booking's starts.
    assert found == [
        (DAY + timedelta(hours=h), DAY + timedelta(hours=h + 4)) for h in (4.5, 5, 5.5)
    ]
    # Nothing before now is offered: later ones are, a turnaround after the second booking.
    found = await alternatives(asset, *wanted, now=DAY + timedelta(hours=9))
    assert found == [
        (DAY + timedelta(hours=h), DAY + timedelta(hours=h + 4)) for h in (19, 19.5, 20)
    ]
