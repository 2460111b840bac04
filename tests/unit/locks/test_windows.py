"""Access windows: buffers, and the two nights a year when local clocks jump."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from locks.windows import (
    AccessWindow,
    LocalTimeProblem,
    access_window,
    ceil_to_hour,
    floor_to_hour,
    resolve_local,
    resolve_local_choice,
    to_lock_local,
)

NEW_YORK = "America/New_York"
BERLIN = "Europe/Berlin"
KOLKATA = "Asia/Kolkata"
NO_BUFFER = {"buffer_before": timedelta(0), "buffer_after": timedelta(0)}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_buffers_widen_the_window_on_both_sides() -> None:
    window = access_window(
        utc(2026, 6, 1, 10),
        utc(2026, 6, 1, 14),
        buffer_before=timedelta(minutes=15),
        buffer_after=timedelta(minutes=30),
    )
    assert window == AccessWindow(utc(2026, 6, 1, 9, 45), utc(2026, 6, 1, 14, 30))
    assert window.duration == timedelta(hours=4, minutes=45)


def test_window_is_start_inclusive_end_exclusive() -> None:
    window = AccessWindow(utc(2026, 6, 1, 10), utc(2026, 6, 1, 12))
    assert not window.contains(utc(2026, 6, 1, 9, 59, 59))
    assert window.contains(utc(2026, 6, 1, 10))
    assert window.contains(utc(2026, 6, 1, 11, 59, 59))
    assert not window.contains(utc(2026, 6, 1, 12))


def test_overlap_needs_a_shared_instant() -> None:
    morning = AccessWindow(utc(2026, 6, 1, 8), utc(2026, 6, 1, 12))
    assert morning.overlaps(AccessWindow(utc(2026, 6, 1, 11), utc(2026, 6, 1, 13)))
    assert morning.overlaps(AccessWindow(utc(2026, 6, 1, 9), utc(2026, 6, 1, 10)))
    assert not morning.overlaps(AccessWindow(utc(2026, 6, 1, 12), utc(2026, 6, 1, 13)))
    assert not AccessWindow(utc(2026, 6, 1, 12), utc(2026, 6, 1, 13)).overlaps(morning)


def test_window_is_kept_in_utc_and_refuses_nonsense() -> None:
    plus_two = timezone(timedelta(hours=2))
    window = AccessWindow(datetime(2026, 6, 1, 12, tzinfo=plus_two), utc(2026, 6, 1, 11))
    assert window.starts_at == utc(2026, 6, 1, 10)
    assert window.starts_at.tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        AccessWindow(datetime(2026, 6, 1, 10), utc(2026, 6, 1, 11))
    with pytest.raises(ValueError, match="end after"):
        AccessWindow(utc(2026, 6, 1, 11), utc(2026, 6, 1, 11))
    with pytest.raises(ValueError, match="aware"):
        AccessWindow(utc(2026, 6, 1, 10), utc(2026, 6, 1, 11)).contains(datetime(2026, 6, 1))
    with pytest.raises(ValueError, match="negative"):
        access_window(
            utc(2026, 6, 1, 10),
            utc(2026, 6, 1, 11),
            buffer_before=timedelta(minutes=-5),
            buffer_after=timedelta(0),
        )


def test_overnight_rental_across_spring_forward_lasts_eleven_hours() -> None:
    start = resolve_local(datetime(2026, 3, 7, 20), NEW_YORK)
    end = resolve_local(datetime(2026, 3, 8, 8), NEW_YORK)
    window = access_window(start, end, **NO_BUFFER)
    assert window.duration == timedelta(hours=11)
    assert (window.starts_at, window.ends_at) == (utc(2026, 3, 8, 1), utc(2026, 3, 8, 12))


def test_overnight_rental_across_fall_back_lasts_thirteen_hours_plus_buffers() -> None:
    start = resolve_local(datetime(2026, 10, 31, 20), NEW_YORK)
    end = resolve_local(datetime(2026, 11, 1, 8), NEW_YORK)
    assert access_window(start, end, **NO_BUFFER).duration == timedelta(hours=13)
    window = access_window(
        start, end, buffer_before=timedelta(minutes=30), buffer_after=timedelta(minutes=30)
    )
    assert window.duration == timedelta(hours=14)
    # 20:00 EDT is 00:00 UTC, 08:00 EST is 13:00 UTC; then half an hour each side.
    assert (window.starts_at, window.ends_at) == (
        utc(2026, 10, 31, 23, 30),
        utc(2026, 11, 1, 13, 30),
    )


def test_buffers_are_absolute_time_even_when_given_local_datetimes() -> None:
    # Zone-aware inputs from the lock's zone: a wall-clock subtraction would give 12 h here.
    start = to_lock_local(resolve_local(datetime(2026, 3, 7, 20), NEW_YORK), NEW_YORK)
    end = to_lock_local(resolve_local(datetime(2026, 3, 8, 8), NEW_YORK), NEW_YORK)
    window = access_window(
        start, end, buffer_before=timedelta(hours=1), buffer_after=timedelta(hours=1)
    )
    assert window.duration == timedelta(hours=13)


def test_buffer_after_across_fall_back_is_an_hour_of_real_time() -> None:
    # The rental ends at the first 01:30 (EDT); an hour later the clocks show 01:30 again (EST).
    first = to_lock_local(resolve_local_choice(datetime(2026, 11, 1, 1, 30), NEW_YORK, 0), NEW_YORK)
    window = access_window(
        first - timedelta(hours=2),
        first,
        buffer_before=timedelta(0),
        buffer_after=timedelta(hours=1),
    )
    assert window.ends_at == utc(2026, 11, 1, 6, 30)
    assert to_lock_local(window.ends_at, NEW_YORK).strftime("%H:%M %Z") == "01:30 EST"


def test_berlin_spring_forward_half_past_two_does_not_exist() -> None:
    naive = datetime(2026, 3, 29, 2, 30)
    with pytest.raises(LocalTimeProblem) as caught:
        resolve_local(naive, BERLIN)
    problem = caught.value
    assert isinstance(problem, ValueError)
    assert (problem.kind, problem.naive, problem.timezone) == ("nonexistent", naive, BERLIN)
    with pytest.raises(LocalTimeProblem):
        resolve_local_choice(naive, BERLIN, 0)


def test_berlin_fall_back_half_past_two_is_ambiguous_with_two_instants() -> None:
    naive = datetime(2026, 10, 25, 2, 30)
    with pytest.raises(LocalTimeProblem) as caught:
        resolve_local(naive, BERLIN)
    problem = caught.value
    assert problem.kind == "ambiguous"
    summer, winter = problem.candidates
    assert summer == utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert winter == utc(2026, 10, 25, 1, 30)  # 02:30 CET
    assert winter - summer == timedelta(hours=1)
    assert resolve_local_choice(naive, BERLIN, 0) == summer
    assert resolve_local_choice(naive, BERLIN, 1) == winter


def test_ordinary_local_times_resolve_directly() -> None:
    assert resolve_local(datetime(2026, 10, 25, 3, 30), BERLIN) == utc(2026, 10, 25, 2, 30)
    assert resolve_local(datetime(2026, 7, 1, 9), BERLIN) == utc(2026, 7, 1, 7)
    assert resolve_local_choice(datetime(2026, 7, 1, 9), BERLIN, 1) == utc(2026, 7, 1, 7)
    with pytest.raises(ValueError, match="time zone"):
        resolve_local(datetime(2026, 7, 1, 9), "Mars/Olympus_Mons")


def test_to_lock_local_shows_the_locks_wall_clock() -> None:
    local = to_lock_local(utc(2026, 11, 1, 6, 30), NEW_YORK)
    assert (local.hour, local.minute) == (1, 30)
    assert local.utcoffset() == timedelta(hours=-5)  # the second 01:30, in EST
    # A time in the fold never compares equal across zones (PEP 495): compare in UTC.
    assert local.astimezone(UTC) == utc(2026, 11, 1, 6, 30)


def test_floor_and_ceil_in_a_half_hour_offset_zone() -> None:
    moment = utc(2026, 6, 1, 10, 0)  # 15:30 in Kolkata
    floor = floor_to_hour(moment, KOLKATA)
    ceil = ceil_to_hour(moment, KOLKATA)
    assert floor.isoformat() == "2026-06-01T15:00:00+05:30"
    assert ceil.isoformat() == "2026-06-01T16:00:00+05:30"
    assert floor == utc(2026, 6, 1, 9, 30)
    on_the_hour = utc(2026, 6, 1, 9, 30)
    assert floor_to_hour(on_the_hour, KOLKATA) == ceil_to_hour(on_the_hour, KOLKATA) == on_the_hour
    assert ceil_to_hour(on_the_hour + timedelta(microseconds=1), KOLKATA) == ceil


def test_ceil_on_fall_back_night_goes_to_the_second_one_oclock() -> None:
    first_half_past_one = resolve_local_choice(datetime(2026, 11, 1, 1, 30), NEW_YORK, 0)
    ceil = ceil_to_hour(first_half_past_one, NEW_YORK)
    assert ceil - first_half_past_one == timedelta(minutes=30)
    assert ceil.isoformat() == "2026-11-01T01:00:00-05:00"
    second_half_past_one = resolve_local_choice(datetime(2026, 11, 1, 1, 30), NEW_YORK, 1)
    assert ceil_to_hour(second_half_past_one, NEW_YORK).isoformat() == "2026-11-01T02:00:00-05:00"
    assert floor_to_hour(second_half_past_one, NEW_YORK) == ceil
    assert floor_to_hour(first_half_past_one, NEW_YORK).isoformat() == "2026-11-01T01:00:00-04:00"


def test_ceil_on_spring_forward_night_skips_the_missing_hour() -> None:
    half_past_one = resolve_local(datetime(2026, 3, 8, 1, 30), NEW_YORK)
    ceil = ceil_to_hour(half_past_one, NEW_YORK)
    assert ceil.isoformat() == "2026-03-08T03:00:00-04:00"
    assert ceil - half_past_one == timedelta(minutes=30)
    half_past_three = resolve_local(datetime(2026, 3, 8, 3, 30), NEW_YORK)
    assert floor_to_hour(half_past_three, NEW_YORK).isoformat() == "2026-03-08T03:00:00-04:00"
    assert floor_to_hour(half_past_three, NEW_YORK) == ceil


def test_floor_and_ceil_keep_the_whole_window_inside_on_the_hour_bounds() -> None:
    window = AccessWindow(
        resolve_local(datetime(2026, 3, 7, 19, 45), NEW_YORK),
        resolve_local(datetime(2026, 3, 8, 8, 15), NEW_YORK),
    )
    starts = floor_to_hour(window.starts_at, NEW_YORK)
    ends = ceil_to_hour(window.ends_at, NEW_YORK)
    assert (starts.hour, ends.hour, starts.minute, ends.minute) == (19, 9, 0, 0)
    # 19:00 → 09:00 local with one hour skipped; in UTC, as Python subtracts same-zone wall clocks.
    assert AccessWindow(starts, ends).duration == timedelta(hours=13)
