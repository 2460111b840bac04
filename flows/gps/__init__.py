"""GPS from Traccar, channel-agnostic: the events it forwards (``events``), the port its REST
API is read through (``source``), the check of a rental's return at its end
(``return_check``) and the inventory's trackers checked against the server (``check``)."""

from flows.gps.events import (
    GPS_PROVIDER,
    GpsEvent,
    GpsEventKind,
    GpsFix,
    gps_event_handler,
    unknown_pickup_key,
)
from flows.gps.source import Gps, GpsDevice, GpsGeofence, GpsSource, GpsUnavailable

__all__ = [
    "GPS_PROVIDER",
    "Gps",
    "GpsDevice",
    "GpsEvent",
    "GpsEventKind",
    "GpsFix",
    "GpsGeofence",
    "GpsSource",
    "GpsUnavailable",
    "gps_event_handler",
    "unknown_pickup_key",
]
