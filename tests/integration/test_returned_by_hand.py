"""``/returned <booking>``: an owner or manager who saw an item back confirms its return by
hand, when its tracker or the renter's DONE never came; the damage review starts then, and the
renter is told. Nobody else may, and a return is confirmed once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from flows.effects import Outcome
from flows.gps.return_check import set_return_check
from flows.returns import DAMAGE_REVIEW_TIMER
from flows.staging import stage_outcome
from storage.kinds import AlertKind
from storage.models import (
    Asset,
    AuditEvent,
    Booking,
    BookingState,
    Location,
    OpsAlert,
    Renter,
    Timer,
)
from storage.uow import unit_of_work
from tests.integration.ops_harness import (
    MAINTENANCE,
    MANAGER,
    NOW,
    OPS_CHAT,
    OWNER,
    RENTER_PHONE,
    SUPPORT,
    Json,
    Ops,
    buttons,
    ops_app,
)
from tests.support import rental_times


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template) as running_ops:
        yield running_ops


async def a_bike_out_past_its_end(
    ops: Ops, reference: str = "KOUT01", *, ended: timedelta = timedelta(hours=2)
) -> Booking:
    """A tracked bike last seen leaving its yard; its rental ended two hours ago (``ended``),
    no DONE."""
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
        **await rental_times(bike.id, NOW - ended - timedelta(hours=4), NOW - ended),
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


async def not_returned_checked(ops: Ops, booking: Booking) -> None:
    """The rental's "not returned" check, set as its confirmation sets it, runs (it is due)."""
    asset = await Asset.get(id=booking.asset_id)
    async with unit_of_work() as conn:
        await stage_outcome(
            conn, Outcome(timers=[set_return_check(booking, asset)]), ops.clock.now()
        )
    await ops.deliver()


def not_returned_message(ops: Ops) -> Json:
    [message] = [m for m in ops.ops_messages() if "Not returned" in m.get("text", "")]
    assert ops.fake.messages[(OPS_CHAT, message["message_id"])] is message
    return message


async def test_a_return_confirmed_resolves_the_items_not_returned_alert_in_the_group(
    ops: Ops,
) -> None:
    booking = await a_bike_out_past_its_end(ops)
    await not_returned_checked(ops, booking)
    alert = not_returned_message(ops)
    assert alert["text"].startswith("⚠️") and "KOUT01" in alert["text"]
    assert buttons(alert)  # Resolve

    await ops.command(MANAGER, "/returned KOUT01")
    await ops.deliver()

    alert = not_returned_message(ops)  # the same message, edited
    assert alert["text"].startswith("✅"), alert["text"]
    assert "Resolved" in alert["text"] and "by the return of KOUT01" in alert["text"]
    assert buttons(alert) == []
    row = await OpsAlert.get(kind=AlertKind.NOT_RETURNED)
    assert row.resolved_at == ops.clock.now() and row.open_key is None


async def test_an_items_not_returned_alert_stays_open_while_another_rental_of_it_is_out(
    ops: Ops,
) -> None:
    earlier = await a_bike_out_past_its_end(ops, "KOUT02", ended=timedelta(hours=9))
    later = await a_bike_out_past_its_end(ops)
    await not_returned_checked(ops, earlier)
    await not_returned_checked(ops, later)
    assert (await OpsAlert.get(kind=AlertKind.NOT_RETURNED)).occurrences == 2

    await ops.command(MANAGER, "/returned KOUT01")
    await ops.deliver()
    assert not_returned_message(ops)["text"].startswith("⚠️")
    assert (await OpsAlert.get(kind=AlertKind.NOT_RETURNED)).resolved_at is None

    await ops.command(OWNER, "/returned KOUT02")
    await ops.deliver()
    alert = not_returned_message(ops)
    assert alert["text"].startswith("✅") and "by the return of KOUT02" in alert["text"]
