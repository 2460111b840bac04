"""What GPS events do, whichever Traccar (a real one's event forwarding, the demo's simulated
one) sent them: the position is stored, the item's home state follows the newest geofence
event, an item leaving home with no rental running is an "unknown pickup", and an item coming
home during its rental is the GPS half of its return (``flows.returns.note_home``).

Each event is handled once: the runner (the webhook route) commits ``gps_event_handler`` in one
unit of work, the event's id recorded first, so a redelivery changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.effects import Alert, Audit, Handler, Outcome
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.lock_events import EventSeen
from flows.returns import ReturnRules, note_home
from storage.gps import note_home_state, rental_running, store_position, tracked_asset
from storage.kinds import AlertKind
from storage.models import Asset
from storage.returns import note_left_home
from storage.webhooks import claim_event

#: The provider name GPS event ids are recorded under.
GPS_PROVIDER = "traccar"


class GpsEventKind(StrEnum):
    GEOFENCE_ENTER = "geofenceEnter"
    GEOFENCE_EXIT = "geofenceExit"
    OTHER = "other"


@dataclass(frozen=True)
class GpsFix:
    """A position the tracker reported: Traccar's position id, where and when (its fix time)."""

    position_id: int
    latitude: float
    longitude: float
    fixed_at: datetime


@dataclass(frozen=True)
class GpsEvent:
    event_id: str
    kind: GpsEventKind
    device_id: int
    at: datetime
    geofence_id: int | None = None
    position: GpsFix | None = None


def unknown_pickup_key(code: str) -> str:
    return f"unknown-pickup:{code}"


def received(event: GpsEvent, now: datetime) -> GpsEvent:
    """The event with no moment later than ``now``, when Keyturn received it: its times are the
    tracker's clock, which may run ahead (by hours, or to a garbage year). A moment from the
    future would make a return late that was not, or outrank every real event after it."""
    fix = event.position
    if fix is not None and fix.fixed_at > now:
        fix = replace(fix, fixed_at=now)
    return replace(event, at=min(event.at, now), position=fix)


def gps_event_handler(event: GpsEvent, now: datetime, rules: ReturnRules) -> Handler:
    """The handler a runner commits to apply one GPS event once; ``EventSeen`` when its id was
    recorded before (nothing changes)."""

    async def apply(conn: BaseDBAsyncClient) -> Outcome:
        if not await claim_event(conn, GPS_PROVIDER, event.event_id, at=now):
            raise EventSeen(event.event_id)
        return await _apply(conn, received(event, now), now, rules)

    return apply


async def _apply(
    conn: BaseDBAsyncClient, event: GpsEvent, now: datetime, rules: ReturnRules
) -> Outcome:
    """One event, its moments no later than ``now``, applied to the item its device tracks."""
    asset = await tracked_asset(conn, event.device_id)
    if asset is None:
        return Outcome()  # a device no item names: Keyturn keeps nothing of it
    if event.position is not None:
        fix = event.position
        await store_position(
            conn,
            asset_id=asset.id,
            device_id=event.device_id,
            position_id=fix.position_id,
            latitude=fix.latitude,
            longitude=fix.longitude,
            fixed_at=fix.fixed_at,
            received_at=now,
        )
    if event.geofence_id is None:
        return Outcome()
    if event.geofence_id != asset.location.home_geofence_id:
        return Outcome()
    if event.kind == GpsEventKind.GEOFENCE_EXIT:
        return await _left_home(conn, asset, event, now)
    if event.kind == GpsEventKind.GEOFENCE_ENTER:
        return await _came_home(conn, asset, event, now, rules)
    return Outcome()


async def _left_home(
    conn: BaseDBAsyncClient, asset: Asset, event: GpsEvent, now: datetime
) -> Outcome:
    newest = await note_home_state(conn, asset.id, False, event.at)
    if newest:
        await note_left_home(conn, asset.id, event.at)
    outcome = Outcome(
        audits=[Audit("gps", "asset.left_home", f"asset:{asset.code}", {"newest": newest})]
    )
    if await rental_running(conn, asset.id, event.at):
        return outcome
    # No rental holds the item: somebody took it without a booking. The alert names the item
    # and the moment, never where it is (positions are for /where, owners and managers only).
    outcome.alerts.append(
        Alert(
            AlertKind.UNKNOWN_PICKUP,
            unknown_pickup_key(asset.code),
            "ops.unknown_pickup",
            {
                "asset": f"{asset.code} {asset.label}",
                "location": asset.location.name,
                "at": local_time(event.at, asset.location.timezone, OPS_LANGUAGE),
            },
        )
    )
    return outcome


async def _came_home(
    conn: BaseDBAsyncClient, asset: Asset, event: GpsEvent, now: datetime, rules: ReturnRules
) -> Outcome:
    # When the item was last seen leaving its yard (the row as read before this event).
    left_at = asset.gps_home_at if asset.gps_home is False else None
    newest = await note_home_state(conn, asset.id, True, event.at)
    outcome = Outcome(
        audits=[Audit("gps", "asset.came_home", f"asset:{asset.code}", {"newest": newest})]
    )
    if not newest:
        return outcome  # an older sighting arriving late: the item has been seen since
    return outcome + await note_home(conn, asset.id, event.at, now, rules, left_at=left_at)
