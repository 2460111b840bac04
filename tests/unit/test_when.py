"""Reading a day and hours from a renter's text, in their language, relative to now."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from flows.when import WhenNotUnderstood, parse_local_range

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
