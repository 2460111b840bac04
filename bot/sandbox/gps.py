"""The sandbox page's simulated GPS (the demo's): the items with a tracker at a yard with a home
geofence, and a control that moves one out of or into its yard. The move is an event of the
simulated Traccar in Traccar's forwarding format, applied through the webhook's own path."""

from __future__ import annotations

import json
from datetime import timedelta

from aiohttp import web

from bot.gps.routes import receive_forwarded
from bot.gps.simulated import SimulatedTraccar
from bot.keys import CLOCK
from bot.webhook_body import read_capped
from bot.webhook_json import UnreadableJson, load_json
from storage.columns import fits_column
from storage.models import Asset

SIMULATED_TRACCAR = web.AppKey("simulated_traccar", SimulatedTraccar)
MAX_BODY = 1024


def setup_sandbox_gps(app: web.Application, traccar: SimulatedTraccar) -> None:
    app[SIMULATED_TRACCAR] = traccar
    app.router.add_get("/sandbox/api/gps", tracked_items)
    app.router.add_post("/sandbox/api/gps/{code}", move_item)


async def _tracked() -> list[Asset]:
    return (
        await Asset.filter(
            active=True,
            traccar_device_id__isnull=False,
            location__home_geofence_id__isnull=False,
        )
        .prefetch_related("location")
        .order_by("code")
    )


async def tracked_items(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "items": [
                {
                    "code": asset.code,
                    "label": asset.label,
                    "location": asset.location.name,
                    "home": asset.gps_home,
                }
                for asset in await _tracked()
            ]
        }
    )


async def move_item(request: web.Request) -> web.Response:
    """``{"home": false}`` takes the item out of its yard, ``{"home": true}`` brings it back."""
    code = request.match_info["code"].upper()
    asset = None
    if fits_column(Asset, "code", code):
        asset = next((a for a in await _tracked() if a.code == code), None)
    if asset is None:
        raise web.HTTPNotFound(text="no item with a tracker and a home geofence has that code")
    try:
        data = load_json(await read_capped(request, MAX_BODY))
    except UnreadableJson:
        raise web.HTTPBadRequest(text="not JSON") from None
    home = data.get("home") if isinstance(data, dict) else None
    if not isinstance(home, bool):
        raise web.HTTPBadRequest(text='send {"home": true} or {"home": false}')
    assert asset.traccar_device_id is not None and asset.location.home_geofence_id is not None
    at = request.app[CLOCK].now()
    if asset.gps_home_at is not None:
        # A paused demo clock still moves the item: each move is after the last one it made.
        at = max(at, asset.gps_home_at + timedelta(milliseconds=1))
    payload = request.app[SIMULATED_TRACCAR].move(
        asset.traccar_device_id, asset.location.home_geofence_id, home=home, at=at
    )
    # Received as it was sent: a paused clock's move, a millisecond on, stays newer.
    applied = await receive_forwarded(request.app, json.dumps(payload).encode(), received_at=at)
    return web.json_response({"code": asset.code, "home": home, "applied": applied})
