"""GPS from Traccar, from outside: the fake Traccar forwards its events to POST /webhooks/traccar
(in order, out of order, duplicated, unsigned) and serves the REST API Keyturn reads."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.gps.check import warn_about_trackers
from bot.gps.traccar import TraccarClient
from flows.gps import GpsUnavailable
from flows.inventory import apply_inventory, load_inventory
from flows.returns import note_return_checklist
from flows.staging import run_unit
from storage.kinds import AlertKind
from storage.models import Asset, Booking, GpsPosition, OpsAlert
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.server import running
from tests.fakes.traccar import FakeTraccar
from tests.integration.conftest import END, START, booked

SECRET = "traccar-forward-5ecret"
TRACKER, HOME_FENCE = 101, 1  # T1's tracker and Harbor Yard's geofence in the demo inventory


@dataclass
class Gps:
    client: TestClient[Any, Any]
    traccar: FakeTraccar
    runtime: Runtime
    clock: FakeClock


@asynccontextmanager
async def gps_app(database: str, clock: FakeClock) -> AsyncIterator[Gps]:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    traccar = FakeTraccar()
    traccar.add_device(TRACKER, "T1 tracker")
    traccar.add_device(102, "T2 tracker")
    traccar.add_device(201, "B1 tracker")
    traccar.add_geofence(HOME_FENCE, "Harbor Yard", 40.70, -74.01)
    traccar.add_geofence(2, "Altstadt Depot", 52.52, 13.40)
    async with running(traccar.app()) as api_base:
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": database,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "TRACCAR_API_BASE": api_base,
                "TRACCAR_API_TOKEN": traccar.token,
                "TRACCAR_WEBHOOK_SECRET": SECRET,
            }
        )
        runtime = build_runtime(settings, clock=clock)
        app = create_app(runtime, workers=False)
        app.cleanup_ctx.clear()  # the `database` fixture holds the connection
        async with TestClient(TestServer(app)) as client:
            traccar.forward_url = str(client.make_url("/webhooks/traccar"))
            traccar.forward_header = ("X-Keyturn-Secret", SECRET)
            yield Gps(client, traccar, runtime, clock)
            assert runtime.gps is not None
            await runtime.gps.source.close()  # type: ignore[attr-defined]


async def open_alerts(kind: str) -> list[OpsAlert]:
    return await OpsAlert.filter(kind=kind, resolved_at__isnull=True)


async def test_an_unsigned_or_wrongly_signed_event_is_refused_and_changes_nothing(
    database: str, clock: FakeClock
) -> None:
    async with gps_app(database, clock) as gps:
        payload = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=clock.now())
        assert await gps.traccar.forward(payload, signed=False) == 403
        wrong = ("X-Keyturn-Secret", SECRET + "x")
        assert await gps.traccar.forward(payload, header=wrong) == 403
        assert await GpsPosition.all().count() == 0
        assert await open_alerts(AlertKind.UNKNOWN_PICKUP) == []
        assert await gps.traccar.forward(payload) == 200  # signed, the same event is taken
        assert await GpsPosition.all().count() == 1


async def test_an_item_leaving_home_with_no_rental_is_an_unknown_pickup_without_its_position(
    database: str, clock: FakeClock
) -> None:
    async with gps_app(database, clock) as gps:
        at = clock.now() - timedelta(minutes=2)
        payload = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=at)
        assert await gps.traccar.forward(payload) == 200
        [alert] = await open_alerts(AlertKind.UNKNOWN_PICKUP)
        text = gps.runtime.translator.text("en", alert.message_key, **alert.params)
        assert "T1" in text and "Harbor Yard" in text and "7:58" in text  # 11:58 UTC in New York
        position = payload["position"]
        for coordinate in (position["latitude"], position["longitude"]):
            assert str(coordinate) not in text and str(coordinate) not in json.dumps(alert.params)
        stored = await GpsPosition.get(position_id=position["id"])
        asset = await Asset.get(code="T1")
        assert stored.asset_id == asset.id and stored.fixed_at == at
        assert asset.gps_home is False and asset.gps_home_at == at


async def test_a_duplicated_event_is_handled_once(database: str, clock: FakeClock) -> None:
    async with gps_app(database, clock) as gps:
        payload = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=clock.now())
        assert await gps.traccar.forward(payload) == 200
        clock.advance(timedelta(hours=1))
        assert await gps.traccar.forward(payload) == 200  # Traccar retried
        [alert] = await open_alerts(AlertKind.UNKNOWN_PICKUP)
        assert alert.occurrences == 1
        assert await GpsPosition.all().count() == 1


async def test_an_older_event_arriving_late_never_overrides_a_newer_one(
    database: str, clock: FakeClock
) -> None:
    async with gps_app(database, clock) as gps:
        left = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=clock.now())
        back = gps.traccar.move(
            TRACKER, HOME_FENCE, entering=True, at=clock.now() + timedelta(minutes=30)
        )
        clock.advance(timedelta(hours=1))
        assert await gps.traccar.forward(back) == 200
        assert await gps.traccar.forward(left) == 200  # delivered out of order
        asset = await Asset.get(code="T1")
        assert asset.gps_home is True
        assert asset.gps_home_at == START.replace(hour=12, minute=30, day=1)
        assert await GpsPosition.all().count() == 2


async def test_leaving_home_during_a_rental_alerts_nobody(database: str, clock: FakeClock) -> None:
    async with gps_app(database, clock) as gps:
        asset = await Asset.get(code="T1")
        await booked(gps.runtime, asset.id, START, END, reference="KGPS01", phone="+15550100031")
        gps.clock.current = START + timedelta(minutes=5)
        payload = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=gps.clock.now())
        assert await gps.traccar.forward(payload) == 200
        assert await open_alerts(AlertKind.UNKNOWN_PICKUP) == []
        # After the rental (and its turnaround), the same yard exit is an unknown pickup.
        gps.clock.current = END + timedelta(hours=2)
        later = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=gps.clock.now())
        assert await gps.traccar.forward(later) == 200
        assert len(await open_alerts(AlertKind.UNKNOWN_PICKUP)) == 1


@pytest.mark.parametrize("checklist_first", [True, False])
async def test_gps_home_and_the_return_checklist_confirm_the_return_in_either_order(
    database: str, clock: FakeClock, checklist_first: bool
) -> None:
    async with gps_app(database, clock) as gps:
        asset = await Asset.get(code="T1")
        booking = await booked(
            gps.runtime, asset.id, START, END, reference="KGPS02", phone="+15550100032"
        )
        rules = gps.runtime.journey.settings.returns
        assert rules.gps_on
        out = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=START + timedelta(hours=1))
        home = gps.traccar.move(TRACKER, HOME_FENCE, entering=True, at=END - timedelta(minutes=5))
        clock.current = START + timedelta(hours=1)  # Traccar forwards each event as it happens
        assert await gps.traccar.forward(out) == 200
        clock.current = END

        async def checklist() -> None:
            await run_unit(
                lambda conn: note_return_checklist(conn, booking.id, clock.now(), rules),
                clock.now(),
            )

        if checklist_first:
            await checklist()
            assert (await Booking.get(id=booking.id)).returned_at is None  # GPS not home yet
            assert await gps.traccar.forward(home) == 200
        else:
            assert await gps.traccar.forward(home) == 200
            assert (await Booking.get(id=booking.id)).returned_at is None  # no checklist yet
            await checklist()
        done = await Booking.get(id=booking.id)
        assert done.returned_home_at == END - timedelta(minutes=5)
        assert done.returned_at == END
        assert done.return_timing == "on_time"


async def test_a_body_that_is_not_a_traccar_event_is_a_400(database: str, clock: FakeClock) -> None:
    async with gps_app(database, clock) as gps:
        headers = {"X-Keyturn-Secret": SECRET, "Content-Type": "application/json"}
        for body in (b"{not json", b"[]", b'{"event": {"type": "geofenceExit"}}', b"[" * 5000):
            response = await gps.client.post("/webhooks/traccar", data=body, headers=headers)
            assert response.status == 400, body[:40]
        bad_time = gps.traccar.move(TRACKER, HOME_FENCE, entering=False, at=clock.now())
        bad_time["event"]["eventTime"] = "yesterday"
        assert await gps.traccar.forward(bad_time) == 400
        huge = {"event": {"id": 1, "type": "x", "attributes": {"pad": "x" * 70000}}}
        response = await gps.client.post("/webhooks/traccar", json=huge, headers=headers)
        assert response.status == 413
        assert await GpsPosition.all().count() == 0


async def test_without_traccar_settings_there_is_no_gps_route(
    database: str, clock: FakeClock
) -> None:
    settings = Settings.from_env(
        {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    )
    runtime = build_runtime(settings, clock=clock)
    assert runtime.gps is None and not runtime.journey.settings.returns.gps_on
    app = create_app(runtime, workers=False)
    app.cleanup_ctx.clear()
    async with TestClient(TestServer(app)) as client:
        response = await client.post(
            "/webhooks/traccar", json={"event": {}}, headers={"X-Keyturn-Secret": ""}
        )
        assert response.status == 404


async def test_the_rest_client_sends_its_bearer_token_and_a_wrong_one_is_refused(
    database: str, clock: FakeClock
) -> None:
    traccar = FakeTraccar()
    traccar.add_device(TRACKER, "T1 tracker")
    async with running(traccar.app()) as api_base:
        client = TraccarClient(api_base, traccar.token)
        assert await client.latest_position(TRACKER) is None
        traccar.report(TRACKER, 40.7, -74.0, clock.now())
        fix = await client.latest_position(TRACKER)
        assert fix is not None and fix.latitude == 40.7 and fix.fixed_at == clock.now()
        assert [d.device_id for d in await client.devices()] == [TRACKER]
        await client.close()
        wrong = TraccarClient(api_base, "not-the-token")
        with pytest.raises(GpsUnavailable, match="401"):
            await wrong.devices()
        await wrong.close()
    assert ("GET", "/api/positions", f"deviceId={TRACKER}") in traccar.requests


async def test_inventory_trackers_unknown_to_traccar_are_warned_about(
    database: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with gps_app(database, clock) as gps:
        del gps.traccar.devices[102]
        del gps.traccar.geofences[2]
        assert gps.runtime.gps is not None
        with caplog.at_level(logging.WARNING, logger="bot.gps.check"):
            lines = await warn_about_trackers(gps.runtime.gps.source)
        assert len(lines) == 2
        assert "asset T2" in lines[0] and "102" in lines[0]
        assert "location altstadt" in lines[1] and "home_geofence_id 2" in lines[1]
        assert caplog.text.count("gps: ") == 2
        assert gps.traccar.token not in caplog.text


async def test_a_device_no_item_names_leaves_nothing_behind(
    database: str, clock: FakeClock
) -> None:
    async with gps_app(database, clock) as gps:
        gps.traccar.add_device(999, "a phone someone added to Traccar")
        payload = gps.traccar.move(999, HOME_FENCE, entering=False, at=clock.now())
        assert await gps.traccar.forward(payload) == 200
        assert await GpsPosition.all().count() == 0
        assert await OpsAlert.all().count() == 0
