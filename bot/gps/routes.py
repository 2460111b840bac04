"""``POST /webhooks/traccar``: Traccar's event forwarding, refused unless it carries
``X-Keyturn-Secret: <TRACCAR_WEBHOOK_SECRET>`` (set with ``event.forward.header``), each event
applied once. The route exists only when GPS is on: without Traccar settings it is a 404."""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from aiohttp import web

from bot.gps.events import forwarded_event
from bot.keys import CLOCK, JOURNEY
from bot.webhook_body import read_capped
from bot.webhook_json import UnreadableJson, load_json
from flows.gps import GpsEvent, gps_event_handler
from flows.lock_events import EventSeen
from flows.returns import ReturnRules
from flows.staging import run_unit

log = logging.getLogger(__name__)
#: A forwarded event with its position and device is a few kilobytes.
MAX_BODY = 64 * 1024
SECRET_HEADER = "X-Keyturn-Secret"  # noqa: S105 (a header name, not a secret)
TRACCAR_SECRET = web.AppKey("traccar_webhook_secret", str)


def setup_traccar_webhook(app: web.Application, secret: str) -> None:
    app[TRACCAR_SECRET] = secret
    app.router.add_post("/webhooks/traccar", traccar_webhook)


async def apply_gps_event(event: GpsEvent, now: datetime, rules: ReturnRules) -> bool:
    """Apply one GPS event in its own unit of work; False when its id was seen before."""
    try:
        await run_unit(gps_event_handler(event, now, rules), now)
    except EventSeen:
        return False
    return True


async def receive_forwarded(
    app: web.Application, body: bytes, received_at: datetime | None = None
) -> bool:
    """A forwarded event's body, read and applied (the webhook's path after its secret, which
    the demo's simulated Traccar takes too), received now (or at ``received_at``: no event
    moment is taken later than that). ``web.HTTPBadRequest`` when it is not an event."""
    try:
        event = forwarded_event(load_json(body))
    except (UnreadableJson, ValueError):
        raise web.HTTPBadRequest(text="not a Traccar event") from None
    now = received_at or app[CLOCK].now()
    applied = await apply_gps_event(event, now, app[JOURNEY].settings.returns)
    log.info("traccar event %s %s", event.kind.value, "applied" if applied else "seen before")
    return applied


async def traccar_webhook(request: web.Request) -> web.Response:
    given = request.headers.get(SECRET_HEADER, "").encode()
    if not hmac.compare_digest(given, request.app[TRACCAR_SECRET].encode()):
        raise web.HTTPForbidden(text="secret refused")
    body = await read_capped(request, MAX_BODY)
    applied = await receive_forwarded(request.app, body)
    return web.json_response({"received": True, "applied": applied})
