"""A return is confirmed by the return checklist and, for an item with GPS, its tracker back
home, in either order; its moment is the later of the two, and only then does the damage review
(after which a deposit may be released) begin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.returns import (
    DAMAGE_REVIEW_TIMER,
    LATE_FEE_EFFECT,
    ReturnRules,
    note_home,
    note_return_checklist,
)
from flows.staging import stage_outcome
from storage.gps import note_home_state
from storage.models import Asset, Booking, BookingState, OutboxEffect, Timer
from storage.uow import unit_of_work
from tests.support import a_renter, rental_times, small_inventory

START = datetime(2026, 12, 10, 14, 0, tzinfo=UTC)
END = START + timedelta(hours=4)
GPS = ReturnRules(damage_review=timedelta(hours=12), gps_on=True)


async def a_rental(*, tracker: bool, fee_cents: int = 0) -> Booking:
    harbor, _, trailer = await small_inventory()
    if tracker:
        harbor.home_geofence_id = 7
        await harbor.save()
        trailer.traccar_device_id = 42
        trailer.gps_home = False  # seen leaving its yard with the renter
        trailer.gps_home_at = START + timedelta(minutes=5)
    trailer.late_fee_per_hour_cents = fee_cents
    await trailer.save()
    return await Booking.create(
        reference="KRET1",
        renter=await a_renter(),
        asset=trailer,
        **await rental_times(trailer.id, START, END),
        state=BookingState.ACTIVE,
        currency="USD",
        price_cents=5000,
        deposit_cents=10000,
    )


async def checklist_done(booking: Booking, at: datetime, rules: ReturnRules = GPS) -> None:
    """The renter's DONE at ``at``, committed the way the turn's runner commits it."""
    async with unit_of_work() as conn:
        await stage_outcome(conn, await note_return_checklist(conn, booking.id, at, rules), at)


async def home(booking: Booking, at: datetime, rules: ReturnRules = GPS) -> None:
    """GPS sees the item home at ``at``, committed the way the webhook's runner commits it."""
    async with unit_of_work() as conn:
        # As the Traccar handler does: the item's home state first, then its homecoming.
        await note_home_state(conn, booking.asset_id, True, at)
        await stage_outcome(conn, await note_home(conn, booking.asset_id, at, at, rules), at)


@pytest.mark.parametrize("gps_first", [True, False])
async def test_checklist_and_gps_in_either_order_confirm_the_return_once(
    database: str, gps_first: bool
) -> None:
    booking = await a_rental(tracker=True)
    first, second = END - timedelta(minutes=5), END + timedelta(minutes=3)
    if gps_first:
        await home(booking, first)
        assert (await Booking.get(id=booking.id)).returned_at is None
        await checklist_done(booking, second)
    else:
        await checklist_done(booking, first)
        assert (await Booking.get(id=booking.id)).returned_at is None
        assert not await Timer.filter(kind=DAMAGE_REVIEW_TIMER).exists()
        await home(booking, second)

    returned = await Booking.get(id=booking.id)
    assert returned.returned_at == second
    assert returned.return_timing == "on_time"
    review = await Timer.get(kind=DAMAGE_REVIEW_TIMER)
    assert review.due_at == second + timedelta(hours=12)

    # Told again (a duplicated event, a second DONE), nothing moves.
    await home(booking, second + timedelta(hours=1))
    await checklist_done(booking, second + timedelta(hours=1))
    assert (await Booking.get(id=booking.id)).returned_at == second
    assert await Timer.filter(kind=DAMAGE_REVIEW_TIMER).count() == 1


async def test_without_gps_the_checklist_alone_confirms(database: str) -> None:
    booking = await a_rental(tracker=True)
    early = END - timedelta(hours=2)

    await checklist_done(booking, early, ReturnRules(gps_on=False))

    returned = await Booking.get(id=booking.id)
    assert (returned.returned_at, returned.return_timing) == (early, "early")
    assert await Timer.filter(kind=DAMAGE_REVIEW_TIMER).exists()


async def test_an_item_without_a_tracker_needs_only_the_checklist(database: str) -> None:
    booking = await a_rental(tracker=False)

    await checklist_done(booking, END)

    assert (await Booking.get(id=booking.id)).returned_at == END


async def test_a_late_return_is_charged_per_started_hour_past_the_grace(database: str) -> None:
    booking = await a_rental(tracker=False, fee_cents=1500)
    # 15 minutes' grace: 1 h 10 min late is two started hours.
    await checklist_done(booking, END + timedelta(hours=1, minutes=10))

    returned = await Booking.get(id=booking.id)
    assert (returned.return_timing, returned.late_fee_cents) == ("late", 3000)
    assert await OutboxEffect.filter(
        kind=LATE_FEE_EFFECT, idempotency_key="late-fee:KRET1"
    ).exists()


async def test_within_the_grace_no_fee_is_due(database: str) -> None:
    booking = await a_rental(tracker=False, fee_cents=1500)
    await checklist_done(booking, END + timedelta(minutes=14))

    returned = await Booking.get(id=booking.id)
    assert (returned.return_timing, returned.late_fee_cents) == ("on_time", 0)
    assert not await OutboxEffect.filter(kind=LATE_FEE_EFFECT).exists()


async def test_gps_home_before_the_rental_started_is_not_its_return(database: str) -> None:
    booking = await a_rental(tracker=True)
    trailer = await Asset.get(id=booking.asset_id)

    async with unit_of_work() as conn:
        await note_home(conn, trailer.id, START - timedelta(hours=3), START, GPS)

    assert (await Booking.get(id=booking.id)).returned_home_at is None


@pytest.mark.parametrize("last_seen", [True, None], ids=["inside-its-yard", "never-reported"])
async def test_an_item_never_seen_leaving_is_home_when_the_renter_says_done(
    database: str, last_seen: bool | None
) -> None:
    """A trailer loaded in its yard never crosses the geofence: its tracker never says it came
    back, and nothing says it is away. The checklist confirms its return then and there."""
    booking = await a_rental(tracker=True)
    await Asset.filter(id=booking.asset_id).update(gps_home=last_seen, gps_home_at=None)

    await checklist_done(booking, END)

    returned = await Booking.get(id=booking.id)
    assert (returned.returned_at, returned.returned_home_at) == (END, END)


async def test_an_item_last_seen_away_waits_for_its_tracker(database: str) -> None:
    booking = await a_rental(tracker=True)

    await checklist_done(booking, END)

    assert (await Booking.get(id=booking.id)).returned_at is None
    assert not await Timer.filter(kind=DAMAGE_REVIEW_TIMER).exists()
