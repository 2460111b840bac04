"""The sandbox's simulated GPS through the page's API: moving a tracked item out of its yard
while nobody rents it shows ops an unknown pickup; bringing it back marks it home. Without GPS
(any sandbox but the demo's) there is no control."""

from __future__ import annotations

from pathlib import Path

from storage.models import Asset, GpsPosition
from tests.e2e.sandbox_apps import sandbox_apps


async def test_the_gps_control_moves_an_item_through_the_traccar_path(
    database: str, tmp_path: Path
) -> None:
    async with sandbox_apps(database, tmp_path) as make:
        client, runtime = await make(gps=True)
        assert runtime.journey.settings.returns.gps_on
        items = (await (await client.get("/sandbox/api/gps")).json())["items"]
        assert [item["code"] for item in items] == ["B1", "T1", "T2"]  # S1, C1: no tracker
        response = await client.post("/sandbox/api/gps/t1", json={"home": False})
        assert response.status == 200, await response.text()
        feed = await (await client.get("/sandbox/api/ops")).json()
        [alert] = [a for a in feed["alerts"] if a["kind"] == "unknown_pickup"]
        assert "T1" in alert["text"] and "Harbor Yard" in alert["text"]
        assert (await Asset.get(code="T1")).gps_home is False
        assert await GpsPosition.filter(device_id=101).count() == 1
        response = await client.post("/sandbox/api/gps/T1", json={"home": True})
        assert response.status == 200
        assert (await Asset.get(code="T1")).gps_home is True
        assert (await client.post("/sandbox/api/gps/S1", json={"home": False})).status == 404
        assert (await client.post("/sandbox/api/gps/T1", json={"home": "yes"})).status == 400
        # The forwarding webhook is there too, behind the simulation's own secret.
        assert (await client.post("/webhooks/traccar", json={})).status == 403


async def test_a_sandbox_without_gps_has_no_control_and_no_webhook(
    database: str, tmp_path: Path
) -> None:
    async with sandbox_apps(database, tmp_path) as make:
        client, runtime = await make()
        assert not runtime.journey.settings.returns.gps_on
        assert (await client.get("/sandbox/api/gps")).status == 404
        assert (await client.post("/sandbox/api/gps/T1", json={"home": False})).status == 404
        assert (await client.post("/webhooks/traccar", json={})).status == 404
