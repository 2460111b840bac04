"""Traccar's REST API as Keyturn reads it (``TRACCAR_API_BASE``, ``TRACCAR_API_TOKEN``).

From Traccar's web API description (``openapi.yaml``): ``GET /api/devices`` → ``[Device]``
(``id``, ``name``, ``uniqueId``, ``status``, ``positionId``, …), ``GET /api/positions?deviceId=``
→ the device's latest ``[Position]`` (``id``, ``deviceId``, ``fixTime``, ``latitude``,
``longitude``, …), ``GET /api/geofences`` → ``[Geofence]`` (``id``, ``name``, ``area``), each
with ``Authorization: Bearer <token>``. Every call has a timeout; every failure leaves as
``GpsUnavailable`` and no message carries the token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bot.gps.events import parse_fix
from flows.gps import GpsDevice, GpsFix, GpsGeofence, GpsUnavailable

TIMEOUT_SECONDS = 10.0


class TraccarClient:
    def __init__(self, api_base: str, token: str, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.api_base = api_base.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def _get(self, path: str, params: dict[str, str] | None = None) -> list[Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        url = f"{self.api_base}/api/{path}"
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.get(url, params=params, headers=headers) as response:
                    if response.status != 200:
                        raise GpsUnavailable(f"Traccar answered {response.status} to /api/{path}")
                    data = await response.json(content_type=None)
        except TimeoutError:
            raise GpsUnavailable(f"Traccar did not answer /api/{path} in time") from None
        except (aiohttp.ClientError, ValueError) as err:
            raise GpsUnavailable(f"Traccar could not be read: {type(err).__name__}") from None
        if not isinstance(data, list):
            raise GpsUnavailable(f"Traccar's /api/{path} is not a list")
        return data

    async def devices(self) -> list[GpsDevice]:
        return [
            GpsDevice(int(raw["id"]), str(raw.get("name", "")), str(raw.get("status", "")))
            for raw in await self._get("devices")
            if isinstance(raw, dict) and _is_id(raw.get("id"))
        ]

    async def latest_position(self, device_id: int) -> GpsFix | None:
        positions = await self._get("positions", {"deviceId": str(device_id)})
        fixes = []
        for raw in positions:
            try:
                fixes.append(parse_fix(raw))
            except ValueError as err:
                raise GpsUnavailable(
                    f"Traccar sent a position Keyturn cannot read: {err}"
                ) from None
        return max(fixes, key=lambda fix: fix.fixed_at, default=None)

    async def geofences(self) -> list[GpsGeofence]:
        return [
            GpsGeofence(int(raw["id"]), str(raw.get("name", "")))
            for raw in await self._get("geofences")
            if isinstance(raw, dict) and _is_id(raw.get("id"))
        ]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
