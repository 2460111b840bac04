"""The port GPS is read through (Traccar's REST API, or the demo's simulated Traccar): its
devices, their latest positions and its geofences. Adapters raise ``GpsUnavailable`` for any
failure of theirs, with a timeout on every call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flows.gps.events import GpsFix


class GpsUnavailable(Exception):
    """The GPS server did not answer, refused the token, or answered what it should not."""


@dataclass(frozen=True)
class GpsDevice:
    device_id: int
    name: str
    status: str = ""


@dataclass(frozen=True)
class GpsGeofence:
    geofence_id: int
    name: str


class GpsSource(Protocol):
    async def devices(self) -> list[GpsDevice]: ...

    async def latest_position(self, device_id: int) -> GpsFix | None:
        """The device's latest position, None when it has reported none."""
        ...

    async def geofences(self) -> list[GpsGeofence]: ...


@dataclass(frozen=True)
class Gps:
    """GPS as the composition root wires it: where positions are read, and the secret Traccar's
    event forwarding must send as ``X-Keyturn-Secret``."""

    source: GpsSource
    webhook_secret: str
