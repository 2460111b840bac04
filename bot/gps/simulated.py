"""The demo's simulated Traccar, in-process: its devices are the inventory's trackers, its
geofences the locations' home geofences, and moving an item out of or into its yard (the
sandbox page's control) makes the event Traccar would forward, in Traccar's format, which goes
through the webhook's own path (``bot.gps.routes.receive_forwarded``)."""

from __future__ import annotations

import itertools
import secrets
from datetime import UTC, datetime
from typing import Any

from flows.gps import Gps, GpsDevice, GpsFix, GpsGeofence
from storage.models import Asset, Location

#: Where the demo's items stand in their yard, and where they are taken when they leave it.
HOME = (43.6563, -70.2483)
AWAY = (43.6790, -70.2700)


def traccar_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


class SimulatedTraccar:
    def __init__(self) -> None:
        self._ids = itertools.count(int(datetime.now(UTC).timestamp()) * 1000)
        self._latest: dict[int, GpsFix] = {}

    async def devices(self) -> list[GpsDevice]:
        rows = await Asset.filter(active=True, traccar_device_id__isnull=False).order_by("code")
        return [GpsDevice(int(a.traccar_device_id or 0), a.code, "online") for a in rows]

    async def latest_position(self, device_id: int) -> GpsFix | None:
        return self._latest.get(device_id)

    async def geofences(self) -> list[GpsGeofence]:
        rows = await Location.filter(home_geofence_id__isnull=False).order_by("slug")
        return [GpsGeofence(int(loc.home_geofence_id or 0), loc.name) for loc in rows]

    def move(self, device_id: int, geofence_id: int, *, home: bool, at: datetime) -> dict[str, Any]:
        """The forwarded payload of the device entering (``home``) or leaving the geofence."""
        lat, lon = HOME if home else AWAY
        fix = GpsFix(next(self._ids), lat, lon, at)
        self._latest[device_id] = fix
        position: dict[str, Any] = {
            "id": fix.position_id,
            "deviceId": device_id,
            "protocol": "osmand",
            "fixTime": traccar_time(at),
            "deviceTime": traccar_time(at),
            "serverTime": traccar_time(at),
            "valid": True,
            "latitude": lat,
            "longitude": lon,
            "geofenceIds": [geofence_id] if home else [],
            "attributes": {},
        }
        event: dict[str, Any] = {
            "id": next(self._ids),
            "type": "geofenceEnter" if home else "geofenceExit",
            "deviceId": device_id,
            "eventTime": traccar_time(at),
            "positionId": fix.position_id,
            "geofenceId": geofence_id,
            "attributes": {},
        }
        device = {"id": device_id, "name": f"tracker {device_id}", "status": "online"}
        return {"event": event, "position": position, "device": device}


def simulated_gps() -> Gps:
    """GPS for the demo: the simulated Traccar and a secret of its own."""
    return Gps(SimulatedTraccar(), secrets.token_urlsafe(24))
