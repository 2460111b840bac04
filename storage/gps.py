"""The items' GPS as Keyturn keeps it: the positions Traccar reported (each stored once, by its
position id), and whether an item was last seen inside its home geofence, set only by an event
newer than the one that set it last."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from storage.db import sql
from storage.models import SLOT_HOLDING_STATES, Asset, Booking, GpsPosition

_STORE_POSITION = (
    "INSERT INTO gps_position (asset_id, device_id, position_id, latitude, longitude, fixed_at,"
    " received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (position_id) DO NOTHING RETURNING id"
)


async def store_position(
    conn: BaseDBAsyncClient,
    *,
    asset_id: int | None,
    device_id: int,
    position_id: int,
    latitude: float,
    longitude: float,
    fixed_at: datetime,
    received_at: datetime,
) -> bool:
    """Store one position Traccar reported; False when that position id was stored before
    (several events carry the same position)."""
    rows = await conn.execute_query_dict(
        sql(_STORE_POSITION),
        [asset_id, device_id, position_id, latitude, longitude, fixed_at, received_at],
    )
    return bool(rows)


async def note_home_state(conn: BaseDBAsyncClient, asset_id: int, home: bool, at: datetime) -> bool:
    """Record that GPS saw the item inside (``home``) or outside its home geofence at ``at``;
    False, changing nothing, when an event as new or newer set it already (events arrive out of
    order and repeat)."""
    changed = await (
        Asset.filter(Q(gps_home_at__isnull=True) | Q(gps_home_at__lt=at), id=asset_id)
        .using_db(conn)
        .update(gps_home=home, gps_home_at=at)
    )
    return bool(changed)


async def tracked_asset(conn: BaseDBAsyncClient | None, device_id: int) -> Asset | None:
    """The item whose tracker is Traccar's device ``device_id``, with its location: the active
    item naming it (the inventory gives a device to one active item at most), else the newest
    retired one (a tracker on an item retired while still out on a rental reports its return)."""
    return (
        await Asset.filter(traccar_device_id=device_id)
        .using_db(conn)
        .select_related("location")
        .order_by("-active", "-id")
        .first()
    )


async def rental_running(conn: BaseDBAsyncClient | None, asset_id: int, at: datetime) -> bool:
    """Whether a booking of the item holds it at ``at``: its access window (with the
    turnaround) contains that moment and it is not cancelled, expired or over."""
    return await (
        Booking.filter(
            asset_id=asset_id,
            state__in=SLOT_HOLDING_STATES,
            blocked_from__lte=at,
            blocked_until__gte=at,
        )
        .using_db(conn)
        .exists()
    )


async def last_position(asset_id: int) -> GpsPosition | None:
    """The newest position stored for the item (by the tracker's fix time)."""
    return await GpsPosition.filter(asset_id=asset_id).order_by("-fixed_at", "-id").first()
