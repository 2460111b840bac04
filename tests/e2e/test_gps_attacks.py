"""Signed Traccar events that should not move a booking the way they do, against the sandbox
with GPS on (the path ``POST /webhooks/traccar`` takes for a real Traccar)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from flows.inventory import apply_inventory, parse_inventory
from storage import db
from storage.models import Asset, Booking, OpsAlert
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.e2e.test_sandbox_handover import confirmed
from tests.e2e.test_sandbox_handover_gps import forwarded
from tests.e2e.test_sandbox_journey import NOW, PNG, Renter, pay, run
from tests.fakes.traccar import FakeTraccar

Sandbox = tuple[TestClient[Any, Any], Runtime, FakeClock]
HOME = 5
DEVICE = 11


async def open_sandbox(tmp_path: Path, template: Path, inventory: str) -> AsyncIterator[Sandbox]:
    path = tmp_path / "gps.sqlite3"
    shutil.copy(template, path)
    url = f"sqlite://{path}"
    clock = FakeClock(NOW)
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, parse_inventory(inventory), now=clock.now())
    await db.close_database()
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": url,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "TRACCAR_API_BASE": "http://127.0.0.1:9/api",
            "TRACCAR_API_TOKEN": "token",
            "TRACCAR_WEBHOOK_SECRET": "secret",
        }
    )
    runtime = build_runtime(settings, clock=clock, sandbox=True)
    app = create_app(runtime, sandbox=True, workers=False)
    async with TestClient(TestServer(app)) as client:
        yield client, runtime, clock


DEMO = DEMO_INVENTORY.read_text(encoding="utf-8")
#: T1 tracked as device 11, charging a late fee of $10 per started hour.
T1_TRACKED = DEMO.replace(
    "traccar_device_id = 101", f'traccar_device_id = {DEVICE}\nlate_fee_per_hour = "10.00"'
).replace("home_geofence_id = 1 ", f"home_geofence_id = {HOME} ")


@pytest.fixture
async def sandbox(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Sandbox]:
    async for opened in open_sandbox(tmp_path, sqlite_template, T1_TRACKED):
        yield opened


async def out_and_back_to_done(sandbox: Sandbox, renter: Renter, booking: Booking) -> FakeTraccar:
    """T1 picked up and driven off; at the end the renter says RETURN and DONE from the road."""
    client, runtime, clock = sandbox
    clock.current = booking.start_at
    await run(runtime)
    await renter.inbox()
    tracker = FakeTraccar()
    tracker.add_device(DEVICE, "T1")
    left = tracker.move(DEVICE, HOME, entering=False, at=booking.start_at + timedelta(minutes=5))
    assert (await forwarded(client, left)).status == 200
    return tracker


async def test_a_tracker_clock_ahead_does_not_make_an_on_time_return_late(
    sandbox: Sandbox,
) -> None:
    """The trailer is back five minutes before its end and the renter said DONE; the tracker's
    clock runs three hours ahead (a device time Traccar forwards as it gets it). The return is
    on time, and the renter is charged no late fee for hours that have not happened."""
    client, runtime, clock = sandbox
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "T1")
    tracker = await out_and_back_to_done(sandbox, renter, booking)
    clock.current = booking.end_at - timedelta(minutes=10)
    await run(runtime)
    await renter.inbox()
    await renter.say("RETURN")
    [noted] = await renter.say("DONE")
    assert "back home" in noted
    clock.current = booking.end_at - timedelta(minutes=5)
    home = tracker.move(DEVICE, HOME, entering=True, at=clock.now() + timedelta(hours=3))
    assert (await forwarded(client, home)).status == 200
    await run(runtime)
    await booking.refresh_from_db()
    told = "\n".join(await renter.inbox())
    assert booking.return_timing == "on_time" and booking.late_fee_cents == 0, (
        booking.return_timing,
        booking.late_fee_cents,
        told,
    )
    assert booking.returned_at is not None and booking.returned_at <= clock.now()


async def test_an_exit_stamped_in_the_future_does_not_stop_the_next_homecoming(
    sandbox: Sandbox,
) -> None:
    """One geofence exit with a garbage event time a year ahead: every later real event is
    older than it, so the trailer is never seen home again and its return never confirmed."""
    client, runtime, clock = sandbox
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "T1")
    tracker = await out_and_back_to_done(sandbox, renter, booking)
    glitch = tracker.move(DEVICE, HOME, entering=False, at=clock.now() + timedelta(days=365))
    assert (await forwarded(client, glitch)).status == 200
    clock.current = booking.end_at - timedelta(minutes=10)
    await run(runtime)
    await renter.inbox()
    await renter.say("RETURN")
    await renter.say("DONE")
    clock.current = booking.end_at - timedelta(minutes=5)
    home = tracker.move(DEVICE, HOME, entering=True, at=clock.now())
    assert (await forwarded(client, home)).status == 200
    await run(runtime)
    await booking.refresh_from_db()
    assert booking.returned_at is not None, "the trailer is home and the renter said DONE"


async def test_a_late_homecoming_as_the_next_rental_opens_confirms_the_renter_who_had_it(
    sandbox: Sandbox,
) -> None:
    """A has T1 10-14 and says DONE on the way back; B has it from 14:30 (its window opens at
    14:15 with the turnaround). T1 enters its yard at 14:16: that is A's return, not B's."""
    client, runtime, clock = sandbox
    a = Renter(client, runtime)
    a_booking = await confirmed(client, a, "T1")
    b = Renter(client, runtime, "+15550100077")
    await b.say("BOOK T1 tomorrow 2:30pm to 6pm")
    _holding, link = await b.say("YES")
    await pay(client, link)
    await b.inbox()
    await b.say(image=PNG)
    await run(runtime)
    checks = (await (await client.get("/sandbox/api/identity")).json())["checks"]
    for check in checks:
        decision = f"/sandbox/api/identity/{check['id']}/decision"
        await client.post(decision, json={"approve": True})
    b_booking = await Booking.exclude(id=a_booking.id).get()
    assert b_booking.state == "confirmed", b_booking.state
    assert b_booking.blocked_from == a_booking.end_at + timedelta(minutes=15)
    tracker = await out_and_back_to_done(sandbox, a, a_booking)
    clock.current = a_booking.end_at + timedelta(minutes=10)
    await run(runtime)
    await a.inbox()
    await a.say("RETURN")
    [noted] = await a.say("DONE")
    assert "back home" in noted
    clock.current = a_booking.end_at + timedelta(minutes=16)
    home = tracker.move(DEVICE, HOME, entering=True, at=clock.now())
    assert (await forwarded(client, home)).status == 200
    await run(runtime)
    await a_booking.refresh_from_db()
    await b_booking.refresh_from_db()
    assert a_booking.returned_at is not None, "A's trailer is home and A said DONE"
    assert "confirmed" in "\n".join(await a.inbox())
    assert b_booking.returned_home_at is None, "B has not even picked it up"


RETRACKED = T1_TRACKED.replace('code = "T1"', 'code = "T3"')


async def test_a_tracker_moved_to_a_new_item_reports_for_the_new_item(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """The operator retires T1 and puts its tracker on a new trailer T3 (T1 gone from the
    file, T3 naming the same traccar_device_id). The tracker's events are T3's now."""
    async for client, _runtime, clock in open_sandbox(tmp_path, sqlite_template, T1_TRACKED):
        async with unit_of_work() as conn:
            await apply_inventory(conn, parse_inventory(RETRACKED), now=clock.now())
        assert not (await Asset.get(code="T1")).active
        tracker = FakeTraccar()
        tracker.add_device(DEVICE, "tracker")
        left = tracker.move(DEVICE, HOME, entering=False, at=clock.now())
        assert (await forwarded(client, left)).status == 200
        t3 = await Asset.get(code="T3")
        [alert] = await OpsAlert.filter(kind="unknown_pickup")
        assert t3.gps_home is False and "T3" in str(alert.params), (t3.gps_home, alert.params)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00"])
async def test_an_event_time_at_the_calendars_edge_is_refused_not_a_server_error(
    sandbox: Sandbox, moment: str
) -> None:
    client, _runtime, clock = sandbox
    tracker = FakeTraccar()
    tracker.add_device(DEVICE, "T1")
    payload = tracker.move(DEVICE, HOME, entering=False, at=clock.now())
    payload["event"]["eventTime"] = moment
    assert (await forwarded(client, payload)).status == 400
    payload = tracker.move(DEVICE, HOME, entering=False, at=clock.now())
    payload["position"]["fixTime"] = moment
    assert (await forwarded(client, payload)).status == 400
