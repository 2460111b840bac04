"""Understanding when a renter wants an item: "tomorrow 9am to 5pm", "sábado 10-14",
"2026-12-09 10:00-13:00".

The day is read by dateparser in the renter's language (English as a fallback), relative to now
in the location's time zone, or taken as it is when written the ISO way (2026-12-09); the hours
come from a small, strict pattern so that "10-14" is a range and not a date. Only ASCII digits are
numbers (see flows.digits), and a day further than FURTHEST_DAY from today, or a duration longer
than LONGEST_DURATION, is not understood rather than overflowing a datetime. A local time that
does not exist or is ambiguous on a daylight-saving night is raised as LocalTimeProblem, so the
renter gets a question back instead of a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import dateparser

from locks.windows import resolve_local

_CLOCK = r"([0-9]{1,2})(?:[:.h]([0-9]{2}))?\s*(am|pm|a\.m\.|p\.m\.|h|uhr)?"
_SEPARATOR = r"\s*(?:-|–|—|to|till|until|a|à|hasta|bis|au)\s*"
_RANGE = re.compile(rf"(?<![0-9/]){_CLOCK}{_SEPARATOR}{_CLOCK}(?![0-9/])", re.IGNORECASE)
#: A day written the ISO way, 2026-12-09: read as it is, before the hours are looked for (its
#: "12-09" would otherwise read as hours).
_ISO_DAY = re.compile(r"(?<![0-9])([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?![0-9])")
#: How far from today a day may be, either way: a rental is never years away, and a day near
#: the end of the calendar (31.12.9999) would overflow once buffers and time zones are added.
FURTHEST_DAY = timedelta(days=3660)
_NOISE = re.compile(
    r"\b(from|de|desde|von|du|ab|le|el|la|am|um|at|on|the|der|die|das)\b", re.IGNORECASE
)


class WhenNotUnderstood(ValueError):
    """The text has no day and hours we can read."""


class DayTooFarAhead(WhenNotUnderstood):
    """A day read well enough, but years ahead (31.12.9999): no rental starts that far off."""


@dataclass(frozen=True)
class LocalRange:
    day: date
    start: time
    end: time  # an end at or before the start means the next day

    def naive_bounds(self) -> tuple[datetime, datetime]:
        start = datetime.combine(self.day, self.start)
        end = datetime.combine(self.day, self.end)
        if end <= start:
            end += timedelta(days=1)
        return start, end


def _clock(hour: str, minute: str | None, suffix: str | None) -> time:
    h = int(hour)
    m = int(minute) if minute else 0
    marker = (suffix or "").lower().replace(".", "")
    if marker == "pm" and h < 12:
        h += 12
    elif marker == "am" and h == 12:
        h = 0
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise WhenNotUnderstood("hours out of range")
    return time(0, m) if h == 24 else time(h, m)


def parse_local_range(text: str, *, language: str, now_local: datetime) -> LocalRange:
    """The day and hours in ``text``, read in ``language`` relative to ``now_local``."""
    base = now_local.replace(tzinfo=None)
    iso = _ISO_DAY.search(text)
    if iso is not None:
        text = text[: iso.start()] + " " + text[iso.end() :]
    match = _RANGE.search(text)
    if match is None:
        raise WhenNotUnderstood("no hours")
    h1, m1, s1, h2, m2, s2 = match.groups()
    if s1 is None and s2 is not None and s2.lower().replace(".", "") in ("am", "pm"):
        # "9-5pm": the first time shares the second's half of the day when that reads forward.
        candidate = _clock(h1, m1, s2)
        s1 = s2 if candidate < _clock(h2, m2, s2) else None
    start = _clock(h1, m1, s1)
    end = _clock(h2, m2, s2)
    day_text = _NOISE.sub(" ", (text[: match.start()] + " " + text[match.end() :])).strip(" ,.")
    today = base.date()
    if iso is not None:  # the day as written, whatever words come with it
        parsed: date | None = _iso_day(*iso.groups())
    elif not day_text:
        parsed = today if start > base.time() else today + timedelta(days=1)
    else:
        parsed = _day(day_text.casefold(), language, today)
    if parsed is None:
        raise WhenNotUnderstood("no day")
    if parsed - today > FURTHEST_DAY:
        raise DayTooFarAhead("the day is years ahead")
    if today - parsed > FURTHEST_DAY:
        raise WhenNotUnderstood("the day is years ago")
    return LocalRange(parsed, start, end)


def _iso_day(year: str, month: str, day: str) -> date | None:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:  # 2026-02-30
        return None


@lru_cache(maxsize=4096)
def _day(day_text: str, language: str, today: date) -> date | None:
    """The day ``day_text`` names, read from ``today``. Renters name the same few days ("today",
    "friday", "3 December") over and over, and dateparser takes milliseconds each time."""
    base = datetime.combine(today, time())
    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": base, "DATE_ORDER": "DMY"}
    languages = [language] if language == "en" else [language, "en"]
    try:
        parsed = dateparser.parse(day_text, languages=languages, settings=settings)
    except (OverflowError, ValueError):  # "in 99999999 years": past the calendar's end
        return None
    return None if parsed is None else parsed.date()


def resolve_range(local: LocalRange, timezone: str) -> tuple[datetime, datetime]:
    """UTC bounds of a local range; raises LocalTimeProblem on a daylight-saving gap or overlap."""
    start, end = local.naive_bounds()
    return resolve_local(start, timezone), resolve_local(end, timezone)


def local_now(now: datetime, timezone: str) -> datetime:
    return now.astimezone(ZoneInfo(timezone))


_DURATION = re.compile(
    r"^\s*([0-9]{1,7}(?:[.,][0-9]{1,4})?)\s*"
    r"(h|hr|hrs|hours?|horas?|heures?|stunden?|std|d|days?|d[ií]as?|"
    r"jours?|tage?n?|m|min|mins|minutes?|minutos?|minuten?)?\s*$",
    re.IGNORECASE,
)
#: Longer than any rental: a duration past it is not understood (and never overflows a date).
LONGEST_DURATION = timedelta(days=3660)


def parse_duration(text: str) -> timedelta:
    """ "2h", "1 day", "30 min", "3 horas", "2 Tage" → a timedelta (hours when no unit)."""
    match = _DURATION.match(text)
    if match is None:
        raise WhenNotUnderstood("no duration")
    amount = float(match.group(1).replace(",", "."))
    unit = (match.group(2) or "h").lower()
    if unit.startswith(("d", "j", "t")):
        delta = timedelta(days=amount)
    elif unit.startswith("m"):
        delta = timedelta(minutes=amount)
    else:
        delta = timedelta(hours=amount)
    if delta <= timedelta(0):
        raise WhenNotUnderstood("duration must be positive")
    if delta > LONGEST_DURATION:
        raise WhenNotUnderstood("duration longer than any rental")
    return delta
