"""Access windows and the lock's local time.

A window is two instants in UTC. Buffers are added in absolute time, and lengths are measured in
absolute time, which is what keeps a rental right across daylight-saving changes: Python subtracts
two datetimes that share a ``ZoneInfo`` by their wall clocks, so 20:00 → 08:00 across the
spring-forward night would come out 12 hours instead of 11. Local times enter only through
``resolve_local``, which refuses to guess when a wall-clock time does not exist or happens twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LocalTimeKind = Literal["nonexistent", "ambiguous"]

_MINUTE = timedelta(minutes=1)
#: How far floor/ceil look for a local on-the-hour time: an hour plus the widest DST gap.
_HOUR_SEARCH_MINUTES = 3 * 60


@dataclass(frozen=True)
class AccessWindow:
    """When a code works: from ``starts_at`` (inclusive) to ``ends_at`` (exclusive), in UTC.

    Aware datetimes in any zone are accepted and stored converted to UTC.
    """

    starts_at: datetime
    ends_at: datetime

    def __post_init__(self) -> None:
        _require_aware(self.starts_at, "starts_at")
        _require_aware(self.ends_at, "ends_at")
        object.__setattr__(self, "starts_at", self.starts_at.astimezone(UTC))
        object.__setattr__(self, "ends_at", self.ends_at.astimezone(UTC))
        if self.ends_at <= self.starts_at:
            raise ValueError("an access window must end after it starts")

    @property
    def duration(self) -> timedelta:
        return self.ends_at - self.starts_at

    def contains(self, moment: datetime) -> bool:
        _require_aware(moment, "moment")
        return self.starts_at <= moment < self.ends_at

    def overlaps(self, other: AccessWindow) -> bool:
        """Whether some instant lies in both; windows that only touch end to start do not."""
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


def access_window(
    start: datetime, end: datetime, *, buffer_before: timedelta, buffer_after: timedelta
) -> AccessWindow:
    """``[start − buffer_before, end + buffer_after]`` for a rental, in absolute (UTC) time."""
    if buffer_before < timedelta(0) or buffer_after < timedelta(0):
        raise ValueError("buffers must not be negative")
    _require_aware(start, "start")
    _require_aware(end, "end")
    return AccessWindow(start.astimezone(UTC) - buffer_before, end.astimezone(UTC) + buffer_after)


class LocalTimeProblem(ValueError):
    """A local wall-clock time that cannot be turned into one instant without asking.

    ``kind`` is "nonexistent" (skipped by the spring-forward jump) or "ambiguous" (repeated by
    the fall-back); for an ambiguous time ``candidates`` holds both UTC instants, earlier first
    (``fold`` 0 then 1), so the renter can be asked which one they meant.
    """

    def __init__(
        self,
        kind: LocalTimeKind,
        naive: datetime,
        timezone: str,
        candidates: tuple[datetime, ...] = (),
    ) -> None:
        super().__init__(f"{naive.isoformat()} is {kind} in {timezone}")
        self.kind: LocalTimeKind = kind
        self.naive = naive
        self.timezone = timezone
        self.candidates = candidates


def resolve_local(naive: datetime, timezone: str) -> datetime:
    """The UTC instant of a local wall-clock time; LocalTimeProblem when there isn't exactly one."""
    zone = _zone(timezone)
    if naive.tzinfo is not None:
        raise ValueError("resolve_local takes a naive local time")
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    # The offsets differ: the time is either in a gap or in an overlap. A time in the gap does
    # not come back to itself through UTC.
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise LocalTimeProblem("nonexistent", naive, timezone)
    raise LocalTimeProblem(
        "ambiguous", naive, timezone, (first.astimezone(UTC), second.astimezone(UTC))
    )


def resolve_local_choice(naive: datetime, timezone: str, fold: int) -> datetime:
    """Like ``resolve_local``, with the renter's answer for an ambiguous time.

    ``fold`` 0 is the first occurrence (before the clocks go back), 1 the second. A time that
    does not exist still raises LocalTimeProblem: no answer makes it exist.
    """
    if fold not in (0, 1):
        raise ValueError("fold must be 0 or 1")
    try:
        return resolve_local(naive, timezone)
    except LocalTimeProblem as problem:
        if problem.kind == "nonexistent":
            raise
        return problem.candidates[fold]


def to_lock_local(moment: datetime, timezone: str) -> datetime:
    """``moment`` as the lock's wall clock shows it (aware, in the lock's zone)."""
    _require_aware(moment, "moment")
    return moment.astimezone(_zone(timezone))


def floor_to_hour(moment: datetime, timezone: str) -> datetime:
    """The latest instant at or before ``moment`` when the lock's clock shows a whole hour.

    Returned aware in the lock's zone, so ``isoformat()`` carries the right offset; compare or
    subtract such times in UTC (or as an ``AccessWindow``), since Python subtracts two datetimes
    of one ``ZoneInfo`` by their wall clocks. Searching
    instants rather than truncating the wall clock keeps it right across DST and for zones with
    half-hour offsets.
    """
    _require_aware(moment, "moment")
    start = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return _find_whole_hour(start, -_MINUTE, _zone(timezone))


def ceil_to_hour(moment: datetime, timezone: str) -> datetime:
    """The earliest instant at or after ``moment`` when the lock's clock shows a whole hour.

    On a fall-back night, 01:30 before the change rounds up to the second 01:00, half an hour
    later, not to 02:00.
    """
    _require_aware(moment, "moment")
    utc = moment.astimezone(UTC)
    start = utc.replace(second=0, microsecond=0)
    if start < utc:
        start += _MINUTE
    return _find_whole_hour(start, _MINUTE, _zone(timezone))


def _find_whole_hour(start: datetime, step: timedelta, zone: ZoneInfo) -> datetime:
    moment = start
    for _ in range(_HOUR_SEARCH_MINUTES):
        local = moment.astimezone(zone)
        if local.minute == 0 and local.second == 0:
            return local
        moment += step
    raise ValueError(f"no whole local hour near {start.isoformat()} in {zone.key}")


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {timezone!r}") from err


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


def floor_hour(instant: datetime, zone: ZoneInfo) -> datetime:
    """The whole hour of ``zone``'s clock at or before ``instant``."""
    local = instant.astimezone(zone)
    floored = local.replace(minute=0, second=0, microsecond=0)
    # Round-trip through UTC so the offset is the one in force at that instant (fold kept).
    return floored.astimezone(UTC).astimezone(zone)


def ceil_hour(instant: datetime, zone: ZoneInfo) -> datetime:
    """The whole hour of ``zone``'s clock at or after ``instant``."""
    floored = floor_hour(instant, zone)
    if floored == instant:
        return floored
    return (floored.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
