"""The demo's clock: a time-lapse that can be paused, re-sped and moved ahead, never back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flows.clock import ClockRefused, DemoClock, SystemClock, real_seconds

START = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)


class RealTime:
    """Real seconds, moved by hand."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_it_runs_speed_times_faster_than_real_time() -> None:
    real = RealTime()
    clock = DemoClock(START, speed=600, real=real)
    real.seconds += 6
    assert clock.now() == START + timedelta(hours=1)
    assert clock.real_seconds(3600) == 6
    assert real_seconds(clock, 3600) == 6
    assert real_seconds(SystemClock(), 3600) == 3600


def test_pausing_stops_it_and_resuming_goes_on_from_there() -> None:
    real = RealTime()
    clock = DemoClock(START, speed=60, real=real)
    real.seconds += 1
    clock.set_paused(True)
    real.seconds += 100
    assert clock.now() == START + timedelta(minutes=1)
    assert clock.real_seconds(60) is None, "a paused clock never reaches a later time"
    clock.set_paused(False)
    real.seconds += 1
    assert clock.now() == START + timedelta(minutes=2)


def test_a_new_speed_applies_from_now_on() -> None:
    real = RealTime()
    clock = DemoClock(START, real=real)
    real.seconds += 10
    clock.set_speed(3600)
    real.seconds += 1
    assert clock.now() == START + timedelta(seconds=10, hours=1)


def test_it_moves_ahead_and_refuses_to_go_back() -> None:
    real = RealTime()
    clock = DemoClock(START, speed=2, paused=True, real=real)
    later = datetime(2026, 12, 8, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    clock.advance_to(later)
    assert clock.now() == later and clock.now().tzinfo == UTC
    with pytest.raises(ClockRefused, match="only moves forward"):
        clock.advance_to(later - timedelta(seconds=1))
    with pytest.raises(ClockRefused, match="offset"):
        clock.advance_to(datetime(2026, 12, 9, 9, 0))
    assert clock.now() == later and clock.paused


@pytest.mark.parametrize("speed", [0, 3601, -5, True, 2.5])
def test_a_speed_outside_1_to_3600_is_refused(speed: int) -> None:
    clock = DemoClock(START, speed=7)
    with pytest.raises(ClockRefused, match="1 to 3600"):
        clock.set_speed(speed)
    assert clock.speed == 7
    with pytest.raises(ClockRefused):
        DemoClock(START, speed=speed)


def test_listeners_hear_every_change() -> None:
    clock = DemoClock(START, real=RealTime())
    heard: list[tuple[int, bool]] = []
    clock.on_change(lambda: heard.append((clock.speed, clock.paused)))
    clock.set_speed(10)
    clock.set_paused(True)
    clock.advance_to(START + timedelta(days=1))
    assert heard == [(10, False), (10, True), (10, True)]
