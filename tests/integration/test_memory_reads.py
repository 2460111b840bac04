"""The in-memory booking reads the unit tests hand the journey answer as the database does: the
same bookings, read both ways, make the same slots free, the same alternatives and the same
count of unpaid holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.cli import DEMO_INVENTORY
from flows.booking import DatabaseBookingReads
from flows.bookings import blocked_range
from flows.inventory import apply_inventory, load_inventory
from locks.windows import AccessWindow
from storage.models import AccessCode, AccessCodeState, Asset, Booking, BookingState, Lock, Renter
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.support import rental_times
from tests.unit.memory import BookingRow, CodeRow, MemoryBookings

DAY = datetime(2026, 6, 3, tzinfo=UTC)


def hours(h: float) -> datetime:
    return DAY + timedelta(hours=h)


async def _book(
    asset: Asset, renter: Renter, start: float, end: float, state: BookingState
) -> Booking:
    return await Booking.create(
        reference=f"KT{start}{end}{state}"[:12],
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, hours(start), hours(end)),
        state=state,
        currency="USD",
        price_cents=5000,
    )


async def _code(booking: Booking, lock: Lock, start: float, end: float, ref: str | None) -> None:
    await AccessCode.create(
        booking=booking,
        lock=lock,
        pin_encrypted="sealed",
        starts_at=hours(start),
        ends_at=hours(end),
        state=AccessCodeState.REMOVED,
        offline=True,
        provider_ref=ref,
    )


async def _in_memory() -> MemoryBookings:
    rows = []
    for booking in await Booking.all():
        codes = await AccessCode.filter(booking_id=booking.id).prefetch_related("lock")
        rows.append(
            BookingRow(
                id=booking.id,
                asset_id=booking.asset_id,
                renter_id=booking.renter_id,
                state=BookingState(booking.state),
                start_at=booking.start_at,
                end_at=booking.end_at,
                blocked_from=booking.blocked_from,
                blocked_until=booking.blocked_until,
                codes=tuple(
                    CodeRow(c.starts_at, c.ends_at, c.offline, c.provider_ref, c.lock.shared)
                    for c in codes
                ),
            )
        )
    return MemoryBookings(rows)


async def test_memory_and_database_agree_on_what_is_free(database: str, clock: FakeClock) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    asset = await Asset.get(code="T1").prefetch_related("location")
    renter = await Renter.create(phone="+15550100009")
    other = await Renter.create(phone="+15550100010")
    await _book(asset, renter, 10, 14, BookingState.CONFIRMED)
    await _book(asset, renter, 14.5, 18.5, BookingState.AWAITING_PAYMENT)
    await _book(asset, other, 30, 32, BookingState.AWAITING_PAYMENT)
    await _book(asset, renter, 40, 42, BookingState.AWAITING_ID)
    await _book(asset, renter, 44, 46, BookingState.COMPLETED)
    await _book(asset, renter, 48, 50, BookingState.EXPIRED)
    bay = await Lock.get(key="harbor-t1")
    lapsing = await _book(asset, renter, 5, 7, BookingState.CANCELLED)
    await _code(lapsing, bay, 4, 8, "offline-1")  # could not be taken off: works until 8:00
    removed = await _book(asset, renter, 20, 22, BookingState.CANCELLED)
    await _code(removed, bay, 19, 23, None)  # taken off: frees its slot
    memory, db = await _in_memory(), DatabaseBookingReads()

    seen = set()
    for half in range(56):
        for length in (1, 2, 4):
            window = blocked_range(asset, hours(half / 2), hours(half / 2 + length))
            free = await db.is_free(asset.id, window)
            assert await memory.is_free(asset.id, window) == free, (half / 2, length)
            seen.add(free)
    assert seen == {True, False}
    exact = AccessWindow(hours(9.75), hours(14.25))
    for ignore in (None, (await Booking.get(start_at=hours(10))).id):
        got = await memory.is_free(asset.id, exact, ignore=ignore)
        assert got == await db.is_free(asset.id, exact, ignore=ignore)
    for wanted, now in [((10, 14), 0), ((10, 12), 0), ((10, 14), 9), ((6, 7), 0), ((31, 33), 0)]:
        starts, ends = hours(wanted[0]), hours(wanted[1])
        assert await memory.alternatives(asset, starts, ends, now=hours(now)) == (
            await db.alternatives(asset, starts, ends, now=hours(now))
        )
    for who in (renter, other):
        assert await memory.unpaid_count(who.id) == await db.unpaid_count(who.id) == 1
