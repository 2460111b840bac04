"""``/returned <booking>``: an owner or manager who saw an item back confirms its return by
hand, when its tracker or the renter's DONE never came; the damage review starts then, and the
renter is told. Nobody else may, and a return is confirmed once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from flows.returns import DAMAGE_REVIEW_TIMER
from storage.models import Asset, AuditEvent, Booking, BookingState, Location, Renter, Timer
from tests.integration.ops_harness import (
    MAINTENANCE,
    MANAGER,
    NOW,
    OWNER,
    RENTER_PHONE,
    SUPPORT,
    Ops,
    ops_app,
)
from tests.support import rental_times


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template) as running_ops:
        yield running_ops


async def a_bike_out_past_its_end(ops: Ops, reference: str = "KOUT01") -> Booking:
    """A tracked bike last seen leaving its yard; its rental ended two hours ago, no DONE."""
    bike = await Asset.get(code="B1")
    await Asset.filter(id=bike.id).update(traccar_device_id=77, gps_home=False)
    await Location.filter(id=bike.location_id).update(home_geofence_id=3)
    renter = await Renter.get_or_none(phone=RENTER_PHONE) or await Renter.create(
        phone=RENTER_PHONE, name="Rita Renter", language="en"
    )
    await ops.renter_says("hi")
    return await Booking.create(
        reference=reference,
        renter=renter,
        asset=bike,
        **await rental_times(bike.id, NOW - timedelta(hours=6), NOW - timedelta(hours=2)),
        state=BookingState.COMPLETED,
        currency="EUR",
        price_cents=3200,
        deposit_cents=0,
    )


async def test_a_manager_confirms_a_return_the_tracker_never_saw(ops: Ops) -> None:
    booking = await a_bike_out_past_its_end(ops)

    answer = await ops.command(MANAGER, "/returned kout01")

    assert "Return of KOUT01 confirmed by" in answer and "(late)" in answer
    await booking.refresh_from_db()
    assert booking.returned_at == ops.runtime.clock.now()
    assert booking.return_timing == "late"
    review = await Timer.get(kind=DAMAGE_REVIEW_TIMER, key="damage-review:KOUT01")
    hours = ops.runtime.journey.settings.returns.damage_review
    assert review.due_at == booking.returned_at + hours
    assert await AuditEvent.filter(
        action="booking.return_confirmed_by_staff", subject="booking:KOUT01"
    ).exists()
    await ops.deliver()
    assert any("Return of Cargo bike" in text and "confirmed" in text for text in ops.sms.texts())

    again = await ops.command(OWNER, "/returned KOUT01")
    assert "is confirmed already" in again
    assert await Timer.filter(kind=DAMAGE_REVIEW_TIMER).count() == 1


@pytest.mark.parametrize("member", [SUPPORT, MAINTENANCE])
async def test_only_owners_and_managers_may_confirm_a_return(ops: Ops, member: int) -> None:
    booking = await a_bike_out_past_its_end(ops)

    answer = await ops.command(member, "/returned KOUT01")

    assert "You may not use /returned" in answer
    await booking.refresh_from_db()
    assert booking.returned_at is None


async def test_a_booking_not_yet_started_has_nothing_to_return(ops: Ops) -> None:
    booking = await a_bike_out_past_its_end(ops)
    times = await rental_times(booking.asset_id, NOW + timedelta(days=1), NOW + timedelta(days=2))
    await Booking.filter(id=booking.id).update(state=BookingState.CONFIRMED, **times)

    answer = await ops.command(OWNER, "/returned KOUT01")

    assert "has no rental under way or ended to return" in answer
    assert (await Booking.get(id=booking.id)).returned_at is None
