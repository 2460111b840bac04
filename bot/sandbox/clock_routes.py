"""The sandbox's clock: read it anywhere the sandbox runs; pause, speed up or move it ahead in the
demo, where everything it drives is simulated.

``POST /sandbox/api/clock`` answers only once every timer due by the new time has fired and the
effects they staged are done (the simulated locks, channels and payments answer at once), so a
script that moves the clock never races it. An effect that failed and waits out its backoff past
the new time is not waited for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from bot.dispatcher import OutboxDispatcher
from bot.keys import CLOCK, DISPATCHER, TIMERS
from bot.timers import TimerRunner
from bot.webhook_json import UnreadableJson, load_json
from flows.clock import MAX_SPEED, ClockRefused, DemoClock
from flows.i18n import local_time
from storage.models import Location
from storage.timers import next_due_at

MAX_BODY = 4 * 1024
#: Passes of timers and effects one move of the clock runs at most: each pass runs everything
#: due, so only effects that keep failing and are retried at once would need more.
MAX_DRAIN_PASSES = 50
FIELDS = frozenset({"speed", "paused", "advance_to"})
#: The furthest one move takes the clock: bookings go no further ahead than this either.
FURTHEST = timedelta(days=3660)
NEXT = "next"


def setup_clock(app: web.Application) -> None:
    app.router.add_get("/sandbox/api/clock", get_clock)
    app.router.add_post("/sandbox/api/clock", post_clock)
    app.router.add_get("/sandbox/api/clock/locations", location_times)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _state(app: web.Application) -> dict[str, Any]:
    clock = app[CLOCK]
    demo = clock if isinstance(clock, DemoClock) else None
    return {
        "now": _iso(clock.now()),
        "speed": demo.speed if demo is not None else 1,
        "paused": demo.paused if demo is not None else False,
        "next_due": _iso(await next_due_at()),
    }


def _refused(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def get_clock(request: web.Request) -> web.Response:
    return web.json_response(await _state(request.app))


async def location_times(request: web.Request) -> web.Response:
    """Each location's local time on the clock, as renters read it."""
    now = request.app[CLOCK].now()
    locations = await Location.all().order_by("name")
    return web.json_response(
        {
            "locations": [
                {
                    "slug": location.slug,
                    "name": location.name,
                    "timezone": location.timezone,
                    "local": local_time(now, location.timezone, "en"),
                }
                for location in locations
            ]
        }
    )


class BadChange(ValueError):
    """The body asks for no change the clock takes; the message says why."""


def _change(body: object) -> dict[str, Any]:
    """The change asked for, checked whole before any of it is made."""
    if not isinstance(body, dict):
        raise BadChange("the body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadChange(f"unknown field {unknown[0]!r}: use speed, paused or advance_to")
    if not body:
        raise BadChange("say what to change: speed, paused or advance_to")
    change: dict[str, Any] = {}
    if "speed" in body:
        speed = body["speed"]
        if isinstance(speed, bool) or not isinstance(speed, int) or not 1 <= speed <= MAX_SPEED:
            raise BadChange(f"speed must be a whole number from 1 to {MAX_SPEED}")
        change["speed"] = speed
    if "paused" in body:
        if not isinstance(body["paused"], bool):
            raise BadChange("paused must be true or false")
        change["paused"] = body["paused"]
    if "advance_to" in body:
        change["advance_to"] = _moment(body["advance_to"])
    return change


def _moment(value: object) -> datetime | str:
    if value == NEXT:
        return NEXT
    if not isinstance(value, str):
        raise BadChange('advance_to must be an ISO-8601 time with its offset, or "next"')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadChange(
            f"advance_to {value[:40]!r} is not an ISO-8601 time (e.g. 2026-12-08T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise BadChange("advance_to must say its offset (e.g. 2026-12-08T09:00:00Z)")
    return moment.astimezone(UTC)


async def post_clock(request: web.Request) -> web.Response:
    clock = request.app[CLOCK]
    if not isinstance(clock, DemoClock):
        return _refused(
            403,
            "this clock is the real time: only `keyturn demo`, where everything is simulated,"
            " has a clock that can be paused, sped up or moved ahead",
        )
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _refused(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        change = _change(load_json(await request.read()))
    except UnreadableJson:
        return _refused(400, "the body must be JSON")
    except BadChange as err:
        return _refused(400, str(err))
    target = change.get("advance_to")
    if target == NEXT:
        target = await next_due_at()
        if target is None:
            return _refused(409, "no timer is pending: there is no next event to move to")
        target = max(target, clock.now())
    if isinstance(target, datetime) and target < clock.now():
        return _refused(400, f"the clock only moves forward: it is already {_iso(clock.now())}")
    if isinstance(target, datetime) and target - clock.now() > FURTHEST:
        return _refused(400, "advance_to is at most ten years ahead of the clock")
    try:
        if "speed" in change:
            clock.set_speed(change["speed"])
        if "paused" in change:
            clock.set_paused(change["paused"])
        if isinstance(target, datetime):
            clock.advance_to(target)
    except ClockRefused as err:  # checked above; the clock checks again
        return _refused(400, str(err))
    await drain(request.app[TIMERS], request.app[DISPATCHER])
    return web.json_response(await _state(request.app))


async def drain(timers: TimerRunner, dispatcher: OutboxDispatcher) -> None:
    """Fire the due timers and run the due effects until nothing more is due."""
    for _ in range(MAX_DRAIN_PASSES):
        fired = await timers.run_due()
        attempted = await dispatcher.run_once()
        if not fired and not attempted:
            return
