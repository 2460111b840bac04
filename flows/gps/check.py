"""The inventory's trackers and home geofences checked against the GPS server: an item whose
``traccar_device_id`` Traccar does not know, or a location whose ``home_geofence_id`` it does
not have, would never be seen leaving or coming home. Checked at start-up and by
``keyturn gps check``; a problem is a warning, never a reason not to start."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flows.gps.source import GpsSource, GpsUnavailable
from storage.models import Asset, Location


class Problem(StrEnum):
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_GEOFENCE = "unknown_geofence"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class TrackerProblem:
    problem: Problem
    #: The item's code or the location's slug (empty when the server cannot be read).
    subject: str
    ident: int | None = None
    detail: str = ""


async def check_trackers(source: GpsSource) -> list[TrackerProblem]:
    assets = await Asset.filter(active=True, traccar_device_id__isnull=False).order_by("code")
    locations = await Location.filter(home_geofence_id__isnull=False).order_by("slug")
    if not assets and not locations:
        return []
    try:
        devices = {device.device_id for device in await source.devices()}
        geofences = {fence.geofence_id for fence in await source.geofences()}
    except GpsUnavailable as err:
        return [TrackerProblem(Problem.UNREACHABLE, "", None, str(err))]
    problems = [
        TrackerProblem(Problem.UNKNOWN_DEVICE, asset.code, asset.traccar_device_id)
        for asset in assets
        if asset.traccar_device_id not in devices
    ]
    problems += [
        TrackerProblem(Problem.UNKNOWN_GEOFENCE, location.slug, location.home_geofence_id)
        for location in locations
        if location.home_geofence_id not in geofences
    ]
    return problems
