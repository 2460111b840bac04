"""The Clock port: flows and timers ask it for the time, so tests can move time by hand.

``SystemClock`` is the real time; ``DemoClock`` is the demo's time-lapse, which runs a number of
times faster than real time, can be paused and moved ahead, and tells whoever listens when it
changes pace (the timer runner re-plans its next wake-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: The fastest a demo clock runs: an hour a second.
MAX_SPEED = 3600


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ClockRefused(ValueError):
    """A change the demo clock does not take (a speed out of range, a move back in time)."""


class DemoClock:
    """The demo's time: ``speed`` seconds of it pass for each real second, unless paused.

    It reads real time from ``real`` (seconds, monotonic), so tests drive it by hand too.
    """

    def __init__(
        self,
        start: datetime | None = None,
        *,
        speed: int = 1,
        paused: bool = False,
        real: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_speed(speed)
        self._real = real
        self._origin = start or datetime.now(UTC)
        self._real_origin = real()
        self._speed = speed
        self._paused = paused
        self._listeners: list[Callable[[], None]] = []

    @property
    def speed(self) -> int:
        return self._speed

    @property
    def paused(self) -> bool:
        return self._paused

    def now(self) -> datetime:
        if self._paused:
            return self._origin
        elapsed = (self._real() - self._real_origin) * self._speed
        return self._origin + timedelta(seconds=elapsed)

    def real_seconds(self, seconds: float) -> float | None:
        """How many real seconds ``seconds`` of this clock take; None while it is paused."""
        if self._paused:
            return None
        return seconds / self._speed

    def set_speed(self, speed: int) -> None:
        _check_speed(speed)
        self._rebase()
        self._speed = speed
        self._changed()

    def set_paused(self, paused: bool) -> None:
        self._rebase()
        self._paused = paused
        self._changed()

    def advance_to(self, moment: datetime) -> None:
        """Jump ahead to ``moment``; the clock goes on from there at its speed."""
        if moment.tzinfo is None:
            raise ClockRefused("the time must say its offset (e.g. 2026-12-08T09:00:00Z)")
        now = self.now()
        if moment < now:
            raise ClockRefused(f"the clock only moves forward: it is already {now.isoformat()}")
        self._origin = moment.astimezone(UTC)
        self._real_origin = self._real()
        self._changed()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each change of speed, pause or time."""
        self._listeners.append(listener)

    def _rebase(self) -> None:
        self._origin = self.now()
        self._real_origin = self._real()

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()


def _check_speed(speed: int) -> None:
    if isinstance(speed, bool) or not isinstance(speed, int) or not 1 <= speed <= MAX_SPEED:
        raise ClockRefused(f"the speed is a whole number from 1 to {MAX_SPEED}")


def real_seconds(clock: Clock, seconds: float) -> float | None:
    """How many real seconds ``seconds`` of ``clock`` take (None: never, the clock is paused).
    Only the demo's clock runs at another pace; any other clock keeps real time."""
    if isinstance(clock, DemoClock):
        return clock.real_seconds(seconds)
    return seconds
