"""Reading a day and hours from a renter's text, in their language, relative to now."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from flows.when import WhenNotUnderstood, parse_duration, parse_local_range

WED = datetime(2026, 6, 3, 9, 30)  # a Wednesday morning, local time


@pytest.mark.parametrize(
    ("text", "language", "day", "start", "end"),
    [
        ("tomorrow 10-14", "en", date(2026, 6, 4), time(10), time(14)),
        ("today 9-5pm", "en", date(2026, 6, 3), time(9), time(17)),
        ("friday 10:30-12", "en", date(2026, 6, 5), time(10, 30), time(12)),
        ("3 December 2026 10-14", "en", date(2026, 12, 3), time(10), time(14)),
        ("Friday 10-14", "en", date(2026, 6, 5), time(10), time(14)),
        ("morgen 10-14 Uhr", "de", date(2026, 6, 4), time(10), time(14)),
        ("mañana 10-14", "es", date(2026, 6, 4), time(10), time(14)),
        ("10-14", "en", date(2026, 6, 3), time(10), time(14)),
        ("8-10", "en", date(2026, 6, 4), time(8), time(10)),  # already past today: tomorrow
        ("2026-12-09 10:00-13:00", "en", date(2026, 12, 9), time(10), time(13)),
        ("2026-12-09 10-13", "de", date(2026, 12, 9), time(10), time(13)),
        ("el 2026-12-09 de 10 a 13", "es", date(2026, 12, 9), time(10), time(13)),
        ("10am to 1pm 2026-12-09", "en", date(2026, 12, 9), time(10), time(13)),
    ],
)
def test_a_day_and_hours_are_read(
    text: str, language: str, day: date, start: time, end: time
) -> None:
    found = parse_local_range(text, language=language, now_local=WED)
    assert (found.day, found.start, found.end) == (day, start, end)


def test_the_same_words_name_a_new_day_each_day() -> None:
    """Days read before are remembered per day they were read on, never across days."""
    assert parse_local_range("tomorrow 10-14", language="en", now_local=WED).day == date(2026, 6, 4)
    thursday = WED.replace(day=4)
    assert parse_local_range("tomorrow 10-14", language="en", now_local=thursday).day == date(
        2026, 6, 5
    )
    assert parse_local_range("FRIDAY 10-14", language="en", now_local=thursday).day == date(
        2026, 6, 5
    )


@pytest.mark.parametrize("text", ["whenever", "tomorrow", "blorp 10-14"])
def test_text_without_a_day_and_hours_is_not_understood(text: str) -> None:
    with pytest.raises(WhenNotUnderstood):
        parse_local_range(text, language="en", now_local=WED)


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow ²-³",  # superscripts pass str.isdigit
        "tomorrow ①-④",
        "tomorrow ١٠-١٤",  # Arabic-Indic digits pass str.isdecimal too
        "tomorrow ３-５",  # full-width
        "31.12.9999 22-23",  # the calendar's last day: its buffers would overflow
        "9999-12-31 22-02",
        "0001-01-01 10-12",
        "in 99999999 years 10-12",
        "2026-02-30 10-12",  # no such day
        "2026-13-01 10-12",
        "tomorrow " + "9" * 400 + "-14",
    ],
)
def test_digits_that_are_not_ascii_and_days_past_the_calendar_are_not_understood(
    text: str,
) -> None:
    with pytest.raises(WhenNotUnderstood):
        parse_local_range(text, language="en", now_local=WED)


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("2h", timedelta(hours=2)),
        ("1 day", timedelta(days=1)),
        ("1,5 Tage", timedelta(days=1.5)),
        ("30 min", timedelta(minutes=30)),
        ("3", timedelta(hours=3)),
        ("400 days", timedelta(days=400)),  # too long for an item, which the journey says
    ],
)
def test_a_duration_is_read(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    "text",
    [
        "999999999999 days",
        "9" * 400,
        "99999999 days",
        "1e999 h",
        "inf",
        "NaN",
        "²",
        "٣ days",
        "３h",
    ],
)
def test_a_duration_past_any_rental_or_not_in_ascii_digits_is_not_understood(text: str) -> None:
    with pytest.raises(WhenNotUnderstood):
        parse_duration(text)
