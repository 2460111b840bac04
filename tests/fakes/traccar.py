"""A fake Traccar server: the REST API Keyturn reads and the event forwarding it receives.

REST, as Traccar's ``openapi.yaml`` describes it: ``GET /api/devices``, ``GET /api/positions``
(``deviceId`` gives that device's latest position; without it every device's latest),
``GET /api/geofences``, each refused with 401 without ``Authorization: Bearer <token>`` (or with
a wrong one). Devices, positions and geofences have Traccar's fields (``id``, ``name``,
``uniqueId``, ``status``, ``positionId``; ``deviceId``, ``fixTime``, ``latitude``,
``longitude``, …; ``area``).

Forwarding, as ``EventForwarderJson`` sends it: one POST per event to ``event.forward.url`` with
``{"event", "position", "device"}`` and the ``event.forward.header`` line as a header. A test
moves a device out of or into a geofence (``move``), which makes the event and its position,
and delivers it (``forward``), again (a duplicate), in another order, or without the header.
``while_answering`` runs a test's check while a position request waits for its answer.
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web


def traccar_time(moment: datetime) -> str:
    """Traccar's JSON dates: ``2026-06-01T16:00:00.000+0000``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


@dataclass
class FakeTraccar:
    token: str = "traccar-token"
    #: The forwarding's ``event.forward.url`` and ``event.forward.header`` (name, value).
    forward_url: str = ""
    forward_header: tuple[str, str] | None = None
    devices: dict[int, dict[str, Any]] = field(default_factory=dict)
    geofences: dict[int, dict[str, Any]] = field(default_factory=dict)
    positions: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Every request's (method, path, query) as it came.
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    #: Run before ``/api/positions`` answers: what the test checks while Keyturn waits for it.
    while_answering: Callable[[], Awaitable[None]] | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def add_device(self, device_id: int, name: str) -> None:
        self.devices[device_id] = {
            "id": device_id,
            "name": name,
            "uniqueId": f"IMEI{device_id:010d}",
            "status": "online",
            "disabled": False,
            "lastUpdate": None,
            "positionId": 0,
            "groupId": 0,
            "attributes": {},
        }

    def add_geofence(self, geofence_id: int, name: str, lat: float, lon: float) -> None:
        self.geofences[geofence_id] = {
            "id": geofence_id,
            "name": name,
            "description": "",
            "area": f"CIRCLE ({lat} {lon}, 100)",
            "calendarId": 0,
            "attributes": {},
        }

    def report(self, device_id: int, lat: float, lon: float, at: datetime) -> dict[str, Any]:
        """The device reports a position (its latest from now on)."""
        position_id = next(self._ids)
        position = {
            "id": position_id,
            "deviceId": device_id,
            "protocol": "osmand",
            "serverTime": traccar_time(at),
            "deviceTime": traccar_time(at),
            "fixTime": traccar_time(at),
            "outdated": False,
            "valid": True,
            "latitude": lat,
            "longitude": lon,
            "altitude": 0.0,
            "speed": 0.0,
            "course": 0.0,
            "address": None,
            "accuracy": 5.0,
            "network": None,
            "geofenceIds": [],
            "attributes": {},
        }
        self.positions[device_id] = position
        self.devices[device_id]["positionId"] = position_id
        self.devices[device_id]["lastUpdate"] = traccar_time(at)
        return position

    def move(
        self, device_id: int, geofence_id: int, *, entering: bool, at: datetime
    ) -> dict[str, Any]:
        """The device crosses ``geofence_id``'s edge at ``at``: the forwarded payload of the
        ``geofenceEnter`` or ``geofenceExit`` event, with the position it was seen at."""
        lat, lon = (40.7000, -74.0100) if entering else (40.7400, -73.9900)
        position = self.report(device_id, lat, lon, at)
        if entering:
            position["geofenceIds"] = [geofence_id]
        event = {
            "id": next(self._ids),
            "attributes": {},
            "deviceId": device_id,
            "type": "geofenceEnter" if entering else "geofenceExit",
            "eventTime": traccar_time(at),
            "positionId": position["id"],
            "geofenceId": geofence_id,
            "maintenanceId": 0,
        }
        return {"event": event, "position": position, "device": dict(self.devices[device_id])}

    async def forward(
        self, payload: dict[str, Any], *, header: tuple[str, str] | None = None, signed: bool = True
    ) -> int:
        """POST one event the way Traccar forwards it; the status Keyturn answered."""
        headers = {"Content-Type": "application/json; charset=utf-8"}
        line = header or self.forward_header
        if signed and line is not None:
            headers[line[0]] = line[1]
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.forward_url, json=payload, headers=headers) as response,
        ):
            await response.read()
            return response.status

    # -- the REST API ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/devices", self._devices)
        app.router.add_get("/api/positions", self._positions)
        app.router.add_get("/api/geofences", self._geofences)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.query_string))
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if scheme != "Bearer" or not hmac.compare_digest(credential.encode(), self.token.encode()):
            return web.Response(status=401, text="HTTP 401 Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    async def _devices(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.devices.values()))

    async def _positions(self, request: web.Request) -> web.Response:
        if self.while_answering is not None:
            await self.while_answering()
        wanted = request.query.get("deviceId")
        if wanted is None:
            return web.json_response(list(self.positions.values()))
        if not wanted.isdigit():
            return web.Response(status=400, text="deviceId must be a number")
        position = self.positions.get(int(wanted))
        return web.json_response([position] if position is not None else [])

    async def _geofences(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.geofences.values()))
