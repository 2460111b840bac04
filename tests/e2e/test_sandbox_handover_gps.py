"""A pickup asked for at the start of a rental (an item with a checklist whose PIN does not
wait for it), and a return that waits for GPS: DONE says so, and the renter hears the return
confirmed when the tracker sees the item home (``flows.returns.note_home``, the path the
Traccar webhook takes)."""

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
from flows.inventory import apply_inventory, load_inventory
from storage import db
from storage.models import Asset, Booking, Handover, Location
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.e2e.test_sandbox_handover import confirmed
from tests.e2e.test_sandbox_journey import NOW, PNG, Renter, run
from tests.fakes.traccar import FakeTraccar

Sandbox = tuple[TestClient[Any, Any], Runtime, FakeClock]


async def forwarded(client: TestClient[Any, Any], payload: dict[str, Any]) -> Any:
    """Traccar's forwarding of one event, with the header traccar.xml sets."""
    return await client.post(
        "/webhooks/traccar", json=payload, headers={"X-Keyturn-Secret": "secret"}
    )


@pytest.fixture
async def sandbox(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Sandbox]:
    """The demo, with T1 checked at pickup (its PIN as before) and tracked at a yard with a
    home geofence, and GPS on."""
    path = tmp_path / "gps.sqlite3"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    clock = FakeClock(NOW)
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
        await (
            Asset.filter(code="T1")
            .using_db(conn)
            .update(
                pickup_photos=["the hitch"], pickup_checklist=["Lights work?"], traccar_device_id=11
            )
        )
        await Location.filter(slug="harbor").using_db(conn).update(home_geofence_id=5)
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


async def test_the_pickup_is_asked_at_the_start_and_the_return_waits_for_gps(
    sandbox: Sandbox,
) -> None:
    client, runtime, clock = sandbox
    assert runtime.journey.settings.returns.gps_on
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "T1")
    clock.current = booking.start_at - timedelta(hours=1)
    [pin_message] = await renter.inbox()
    assert "Trailer Bay 1: " in pin_message, "T1's PIN does not wait for its checklist"
    clock.current = booking.start_at
    intro, ask = await renter.inbox()
    assert intro == "Before you set off with Utility trailer 6x10: a short pickup check."
    assert ask == "Photo 1 of 1: please send a photo of the hitch."
    [question] = await renter.say(image=PNG)
    assert question.startswith("Question 1 of 1: Lights work?")
    [done] = await renter.say("NO")
    assert done == "Thank you, the pickup check of Utility trailer 6x10 is done. Enjoy your rental!"
    await booking.refresh_from_db()
    assert booking.pickup_done_at == clock.now()
    assert (await Handover.get(booking=booking, kind="pickup")).answers == [False]

    # The trailer leaves its yard with the renter: Traccar forwards the geofence exit.
    tracker = FakeTraccar()
    tracker.add_device(11, "T1")
    left = await forwarded(client, tracker.move(11, 5, entering=False, at=clock.now()))
    assert left.status == 200

    clock.current = booking.end_at - timedelta(minutes=5)
    await run(runtime)
    await renter.inbox()
    assert (await renter.say("RETURN"))[-1] == (
        "Thank you. Now lock Utility trailer 6x10 and reply DONE."
    )
    [noted] = await renter.say("DONE")
    assert noted.splitlines() == [
        "Return of Utility trailer 6x10 noted.",  # on time or late once it is home
        "It is confirmed as soon as the tracker sees Utility trailer 6x10 back home.",
    ]
    await booking.refresh_from_db()
    assert booking.return_checklist_at is not None and booking.returned_at is None
    waiting = "It is confirmed as soon as the tracker sees Utility trailer 6x10 back home."
    assert await renter.say("DONE") == [waiting], "a second DONE: the return waits for GPS"
    assert await renter.say("RETURN") == [waiting]

    home_at = clock.now() + timedelta(minutes=2)
    clock.current = home_at
    back = await forwarded(client, tracker.move(11, 5, entering=True, at=home_at))
    assert back.status == 200
    await run(runtime)
    [confirmed_return] = await renter.inbox()
    assert confirmed_return == (
        f"Return of Utility trailer 6x10 confirmed (booking {booking.reference}). Thank you!"
    )
    await booking.refresh_from_db()
    assert booking.returned_at == home_at and booking.return_timing == "on_time"
    assert await Booking.filter(returned_at__isnull=False).count() == 1


async def test_a_pass_through_the_yard_mid_rental_is_not_the_return(sandbox: Sandbox) -> None:
    """The trailer leaves, passes back through its yard and leaves again (or its fix flaps at
    the fence); the renter then says DONE from elsewhere. Nothing is confirmed until the tracker
    sees it come home for good; an entry that arrives late, older than the last exit, counts
    for nothing."""
    client, runtime, clock = sandbox
    renter = Renter(client, runtime)
    booking = await confirmed(client, renter, "T1")
    clock.current = booking.start_at
    await renter.inbox()
    await renter.say(image=PNG)
    await renter.say("YES")
    tracker = FakeTraccar()
    tracker.add_device(11, "T1")
    out, passing, out_again = (booking.start_at + timedelta(minutes=m) for m in (5, 60, 61))
    late_entry = tracker.move(11, 5, entering=True, at=booking.start_at + timedelta(minutes=30))
    for at, entering in ((out, False), (passing, True), (out_again, False)):
        sent = await forwarded(client, tracker.move(11, 5, entering=entering, at=at))
        assert sent.status == 200
    assert (await forwarded(client, late_entry)).status == 200

    clock.current = booking.end_at - timedelta(minutes=5)
    await run(runtime)
    await renter.inbox()
    await renter.say("RETURN")
    [noted] = await renter.say("DONE")
    assert "It is confirmed as soon as the tracker sees Utility trailer 6x10 back home." in noted
    await booking.refresh_from_db()
    assert booking.returned_at is None and booking.returned_home_at is None

    home_at = clock.now() + timedelta(minutes=3)
    clock.current = home_at
    assert (await forwarded(client, tracker.move(11, 5, entering=True, at=home_at))).status == 200
    await run(runtime)
    [confirmed_return] = await renter.inbox()
    assert "confirmed" in confirmed_return
    await booking.refresh_from_db()
    assert booking.returned_at == home_at
