"""Traccar's forwarded events read into Keyturn's ``GpsEvent``.

Traccar's ``event.forward.url`` receives one POST per event, JSON ``{"event": {...},
"position": {...}, "device": {...}}`` (``EventForwarderJson``): the event has ``id``, ``type``
(``geofenceEnter``, ``geofenceExit``, ``deviceOnline``, …), ``deviceId``, ``eventTime``,
``geofenceId``, ``positionId``, ``attributes``; the position ``id``, ``deviceId``, ``fixTime``,
``latitude``, ``longitude``, …. Times are ISO 8601 with an offset
(``2026-06-01T16:00:00.000+0000``); the event's and the fix's are the tracker's clock, which
may run ahead (``flows.gps`` takes no moment later than Keyturn's receipt).
Anything else is refused with ``ValueError`` (the route answers 400).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flows.digits import INT64_MAX
from flows.gps import GpsEvent, GpsEventKind, GpsFix

KINDS = {kind.value: kind for kind in GpsEventKind if kind is not GpsEventKind.OTHER}


def _number_id(raw: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    value = raw.get(key)
    if value is None or (value == 0 and not required):
        if required:
            raise ValueError(f"{key} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= INT64_MAX:
        raise ValueError(f"{key} is not an id")
    return value


def _moment(raw: Mapping[str, Any], key: str) -> datetime:
    value = raw.get(key)
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError(f"{key} is not a time")
    moment = datetime.fromisoformat(value)  # ValueError when it is not ISO 8601
    if moment.tzinfo is None:
        raise ValueError(f"{key} has no offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # the calendar's first or last day, its offset past the edge
        raise ValueError(f"{key} is out of range") from None


def _degrees(raw: Mapping[str, Any], key: str, limit: float) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} is not a number")
    if not math.isfinite(value) or abs(value) > limit:
        raise ValueError(f"{key} is out of range")
    return float(value)


def parse_fix(raw: object) -> GpsFix:
    """A Traccar ``Position`` (in an event or from ``/api/positions``)."""
    if not isinstance(raw, dict):
        raise ValueError("a position is not an object")
    position_id = _number_id(raw, "id")
    assert position_id is not None
    return GpsFix(
        position_id=position_id,
        latitude=_degrees(raw, "latitude", 90),
        longitude=_degrees(raw, "longitude", 180),
        fixed_at=_moment(raw, "fixTime"),
    )


def forwarded_event(data: object) -> GpsEvent:
    """The event of one forwarded request; ValueError when it is not Traccar's format."""
    if not isinstance(data, dict) or not isinstance(data.get("event"), dict):
        raise ValueError("no event")
    event = data["event"]
    kind = event.get("type")
    if not isinstance(kind, str):
        raise ValueError("the event has no type")
    device_id = _number_id(event, "deviceId")
    assert device_id is not None
    at = _moment(event, "eventTime")
    geofence_id = _number_id(event, "geofenceId", required=False)
    position = data.get("position")
    fix = parse_fix(position) if isinstance(position, dict) and position.get("id") else None
    event_id = _number_id(event, "id", required=False)
    # Traccar gives every stored event an id; one forwarded without is known by what it says.
    key = (
        str(event_id)
        if event_id is not None
        else f"{kind}:{device_id}:{at.isoformat()}:{geofence_id}"
    )
    return GpsEvent(
        event_id=key[:200],
        kind=KINDS.get(kind, GpsEventKind.OTHER),
        device_id=device_id,
        at=at,
        geofence_id=geofence_id,
        position=fix,
    )
