"""The inventory's trackers checked against Traccar, as start-up and ``keyturn gps check``
report it: one line per problem, for the operator's log or terminal."""

from __future__ import annotations

import logging

from flows.gps import GpsSource
from flows.gps.check import Problem, TrackerProblem, check_trackers

log = logging.getLogger(__name__)


def describe(problem: TrackerProblem) -> str:
    if problem.problem == Problem.UNKNOWN_DEVICE:
        return (
            f"asset {problem.subject}: traccar_device_id {problem.ident} is not a device"
            " Traccar knows (GET /api/devices); its GPS events will never come"
        )
    if problem.problem == Problem.UNKNOWN_GEOFENCE:
        return (
            f"location {problem.subject}: home_geofence_id {problem.ident} is not a geofence"
            " Traccar has (GET /api/geofences); its items are never seen leaving or coming home"
        )
    return f"Traccar could not be read to check the trackers: {problem.detail}"


async def warn_about_trackers(source: GpsSource) -> list[str]:
    """Check, log a warning per problem and return the lines."""
    lines = [describe(problem) for problem in await check_trackers(source)]
    for line in lines:
        log.warning("gps: %s", line)
    return lines
