"""Alternatives offered when a slot is taken: the nearest free slots of the same length."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.cli import DEMO_INVENTORY
from flows.bookings import alternatives
from flows.inventory import apply_inventory, load_inventory
from storage.models import AccessCode, AccessCodeState, Asset, Booking, BookingState, Lock, Renter
from storage.uow import unit_of_work
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
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
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


async def test_a_lapsing_offline_code_keeps_its_whole_hours_from_being_offered(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    asset = await Asset.get(code="T1").prefetch_related("location")
    renter = await Renter.create(phone="+15550100009")
    await _book(asset, renter, 10, 14, BookingState.CONFIRMED)  # takes 9:45-14:15
    cancelled = await Booking.create(
        reference="KTLAPSE",
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, DAY + timedelta(hours=5), DAY + timedelta(hours=7)),
        state=BookingState.CANCELLED,
        currency="USD",
        price_cents=2500,
    )
    # Its offline code on the bay could not be removed: it works 4:00-8:00, in whole hours.
    await AccessCode.create(
        booking=cancelled,
        lock=await Lock.get(key="harbor-t1"),
        pin_encrypted="sealed",
        starts_at=DAY + timedelta(hours=4),
        ends_at=DAY + timedelta(hours=8),
        state=AccessCodeState.REMOVED,
        offline=True,
        provider_ref="offline-1",
    )
    wanted = (DAY + timedelta(hours=10), DAY + timedelta(hours=12))
    found = await alternatives(asset, *wanted, now=DAY)
    # 7:30-9:30 would take 7:15-9:45, clear of both bookings' ranges, but the offline code
    # still works until 8:00: only later times are offered.
    assert found == [
        (DAY + timedelta(hours=h), DAY + timedelta(hours=h + 2)) for h in (14.5, 15, 15.5)
    ]
