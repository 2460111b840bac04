"""``POST /webhooks/seam``: Seam's Svix-signed events, verified on the raw body, applied once."""

from __future__ import annotations

import logging
from datetime import datetime

from aiohttp import web

from bot.keys import CLOCK
from bot.webhook_body import read_capped
from flows.lock_events import EventSeen, LockEvent, LockEventKind, lock_event_handler
from flows.staging import run_unit
from locks.seam import SeamEvent, SeamWebhookInvalid, SeamWebhookUnreadable, verify_seam_webhook

log = logging.getLogger(__name__)
MAX_BODY = 256 * 1024
SEAM_SECRET = web.AppKey("seam_webhook_secret", str)
SEAM_WEBHOOK_PATH = "/webhooks/seam"

SEAM_KINDS = {
    "access_code.set_on_device": LockEventKind.CODE_SET,
    "access_code.failed_to_set_on_device": LockEventKind.CODE_FAILED,
    "access_code.removed_from_device": LockEventKind.CODE_REMOVED,
    "access_code.deleted_external_to_seam": LockEventKind.CODE_REMOVED,
    "device.disconnected": LockEventKind.DEVICE_OFFLINE,
    "device.connected": LockEventKind.DEVICE_ONLINE,
    "device.low_battery": LockEventKind.LOW_BATTERY,
    "lock.unlocked": LockEventKind.UNLOCKED,
}
#: What Seam's webhook subscribes to: the events Keyturn acts on.
SEAM_EVENTS = tuple(sorted(SEAM_KINDS))


def setup_seam_webhook(app: web.Application, secret: str) -> None:
    app[SEAM_SECRET] = secret
    app.router.add_post(SEAM_WEBHOOK_PATH, seam_webhook)


async def apply_lock_event(event: LockEvent, now: datetime) -> bool:
    """Apply a pushed event once, in one unit of work; False when this event id was seen."""
    try:
        await run_unit(lock_event_handler(event, now), now)
    except EventSeen:
        return False
    return True


def lock_event_from_seam(event: SeamEvent, received: object) -> LockEvent:
    raw = dict(event.raw)
    battery = raw.get("battery_level")
    error = raw.get("error_code") or raw.get("errors") or ""
    return LockEvent(
        provider="seam",
        event_id=event.event_id,
        kind=SEAM_KINDS.get(event.event_type, LockEventKind.OTHER),
        device_id=event.device_id,
        occurred_at=event.occurred_at or received,  # type: ignore[arg-type]
        code_ref=event.access_code_id,
        battery_level=float(battery) if isinstance(battery, int | float) else None,
        detail=str(error)[:200],
        raw=raw,
    )


async def seam_webhook(request: web.Request) -> web.Response:
    body = await read_capped(request, MAX_BODY)
    try:
        event = verify_seam_webhook(request.app[SEAM_SECRET], body, request.headers)
    except SeamWebhookUnreadable:  # a subclass of SeamWebhookInvalid: it must come first
        raise web.HTTPBadRequest(text="not a Seam event") from None
    except SeamWebhookInvalid:
        raise web.HTTPForbidden(text="signature refused") from None
    now = request.app[CLOCK].now()
    applied = await apply_lock_event(lock_event_from_seam(event, now), now)
    log.info("seam event %s %s", event.event_type, "applied" if applied else "seen before")
    return web.json_response({"received": True})
