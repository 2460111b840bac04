"""The "not returned" check of every rental: set when a booking is confirmed, due at its end
plus the item's grace, cancelled with the booking; a rental not back by then alerts ops once
per item and asks its renter."""

from __future__ import annotations

from datetime import timedelta

from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime
from bot.config import Settings
from bot.gps.simulated import simulated_gps
from flows.returns import note_return_checklist
from flows.staging import run_unit
from storage.kinds import AlertKind
from storage.models import (
    Asset,
    Booking,
    BookingState,
    Conversation,
    OpsAlert,
    Renter,
    Timer,
    TimerState,
)
from tests.conftest import FakeClock
from tests.integration.conftest import END, START, confirmed_booking
from tests.support import RecordingChannel, inbound, rental_times


async def _confirmed(runtime: Runtime, code: str, reference: str, phone: str) -> Booking:
    """A booking confirmed the way the journey confirms one (its timers set)."""
    renter = await Renter.create(phone=phone, language="en")
    await Conversation.create(channel="sms", address=phone, renter=renter)
    asset = await Asset.get(code=code)
    booking = await Booking.create(
        reference=reference,
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, START, END),
        state=BookingState.AWAITING_ID,
        currency="USD",
        price_cents=100,
    )
    now = runtime.clock.now()
    await run_unit(lambda conn: runtime.journey.confirm(conn, booking, now), now)
    return booking


def _app(database: str, clock: FakeClock, sms: RecordingChannel, *, gps: bool) -> Runtime:
    settings = Settings.from_env(
        {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    )
    return build_runtime(
        settings, clock=clock, channels={"sms": sms}, gps=simulated_gps() if gps else None
    )


async def _settle(runtime: Runtime) -> None:
    for _ in range(3):
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()


async def test_a_rental_not_back_after_its_grace_alerts_ops_and_asks_the_renter(
    database: str, clock: FakeClock, runtime: Runtime
) -> None:
    sms = RecordingChannel("sms")
    app = _app(database, clock, sms, gps=False)
    booking = await _confirmed(app, "T1", "KRET01", "+15550100041")
    timer = await Timer.get(key="return-check:KRET01")
    assert timer.due_at == END + timedelta(minutes=15)  # the item's late_grace_minutes
    clock.current = END + timedelta(minutes=10)
    await _settle(app)
    assert await OpsAlert.filter(kind=AlertKind.NOT_RETURNED).count() == 0  # still in grace
    clock.current = END + timedelta(minutes=16)
    await _settle(app)
    [alert] = await OpsAlert.filter(kind=AlertKind.NOT_RETURNED)
    assert alert.group_key == "not-returned:T1" and alert.params["booking"] == "KRET01"
    asked = [text for text in sms.texts() if "RETURN" in text]
    assert len(asked) == 1 and "T1" in asked[0] and "tracker" not in asked[0]
    assert (await Booking.get(id=booking.id)).state == BookingState.COMPLETED


async def test_a_returned_rental_is_not_chased(
    database: str, clock: FakeClock, runtime: Runtime
) -> None:
    sms = RecordingChannel("sms")
    app = _app(database, clock, sms, gps=False)
    booking = await _confirmed(app, "T1", "KRET02", "+15550100042")
    clock.current = END - timedelta(minutes=5)
    rules = app.journey.settings.returns
    await run_unit(
        lambda conn: note_return_checklist(conn, booking.id, clock.now(), rules), clock.now()
    )
    clock.current = END + timedelta(hours=1)
    await _settle(app)
    assert await OpsAlert.filter(kind=AlertKind.NOT_RETURNED).count() == 0
    assert not [text for text in sms.texts() if "RETURN" in text]


async def test_late_rentals_of_one_item_are_one_alert_and_a_gps_item_away_is_named_so(
    database: str, clock: FakeClock, runtime: Runtime
) -> None:
    sms = RecordingChannel("sms")
    app = _app(database, clock, sms, gps=True)
    first = await _confirmed(app, "T1", "KRET03", "+15550100043")
    await Asset.filter(code="T1").update(gps_home=False, gps_home_at=START)
    clock.current = END + timedelta(minutes=16)
    await _settle(app)
    # A second late rental of T1, checked later: the same alert grows.
    second = await Booking.create(
        reference="KRET04",
        renter=await Renter.get(phone="+15550100043"),
        asset=await Asset.get(code="T1"),
        **await rental_times(first.asset_id, END + timedelta(hours=2), END + timedelta(hours=3)),
        state=BookingState.AWAITING_ID,
        currency="USD",
        price_cents=100,
    )
    now = clock.now()
    await run_unit(lambda conn: app.journey.confirm(conn, second, now), now)
    clock.current = END + timedelta(hours=3, minutes=16)
    await _settle(app)
    [alert] = await OpsAlert.filter(kind=AlertKind.NOT_RETURNED)
    assert alert.occurrences == 2 and alert.message_key == "ops.not_returned_gps"
    asked = [text for text in sms.texts() if "RETURN" in text]
    assert len(asked) == 2 and all("tracker" in text for text in asked)


async def test_a_cancelled_booking_has_no_return_check(
    database: str, clock: FakeClock, runtime: Runtime
) -> None:
    sms = RecordingChannel("sms")
    app = _app(database, clock, sms, gps=False)
    booking = await _confirmed(app, "T2", "KRET05", "+15550100045")
    assert await Timer.filter(key="return-check:KRET05", state=TimerState.PENDING).exists()
    await run_unit(
        lambda conn: app.journey.cancel_booking(
            conn, booking, actor="test", now=clock.now(), refund=0
        ),
        clock.now(),
    )
    assert not await Timer.filter(key="return-check:KRET05", state=TimerState.PENDING).exists()
    clock.current = END + timedelta(hours=1)
    await _settle(app)
    assert await OpsAlert.filter(kind=AlertKind.NOT_RETURNED).count() == 0


async def test_an_extension_moves_the_check_to_the_new_end(
    runtime: Runtime, clock: FakeClock
) -> None:
    await Asset.filter(code="T1").update(price_per_hour_cents=0, price_per_day_cents=0)
    await confirmed_booking(runtime)
    clock.current = START + timedelta(minutes=30)
    for text in ("EXTEND 1h", "YES"):
        await runtime.engine.handle(
            inbound(text, address="+15550100001", channel="sms", at=clock.now())
        )
    timer = await Timer.get(key="return-check:KT1001", state=TimerState.PENDING)
    assert timer.due_at == END + timedelta(hours=1, minutes=15)
    clock.current = END + timedelta(minutes=30)  # past the old end's grace
    await _settle(runtime)
    assert await OpsAlert.filter(kind=AlertKind.NOT_RETURNED).count() == 0
