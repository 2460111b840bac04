"""The timer runner under the demo's clock: it wakes at the due time divided by the speed, and
re-plans its wake-up when the clock is paused, resumed or re-sped."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from tortoise.transactions import in_transaction

from bot.timers import TimerRunner
from flows.clock import DemoClock
from flows.effects import Outcome
from flows.timers import TimerFired
from storage.timers import set_timer


async def _runner_with_a_timer(
    clock: DemoClock, due_in: timedelta, *, poke: bool = True
) -> tuple[TimerRunner, asyncio.Event]:
    fired = asyncio.Event()

    async def handler(event: TimerFired) -> Outcome:
        fired.set()
        return Outcome()

    # The safety net is far off: only the planned wake-up can fire the timer in time.
    runner = TimerRunner(clock, {"remind": handler}, safety_interval=60)
    runner.start()
    await asyncio.sleep(0.2)  # the start-up pass has found nothing
    async with in_transaction() as conn:
        await set_timer(conn, kind="remind", due_at=clock.now() + due_in, now=clock.now())
    if poke:
        runner.poke()
    return runner, fired


async def test_a_fast_clock_wakes_the_runner_at_its_due_time_divided_by_the_speed(
    database: str,
) -> None:
    clock = DemoClock(speed=3600)
    runner, fired = await _runner_with_a_timer(clock, timedelta(hours=1))
    started = time.monotonic()
    try:
        await asyncio.wait_for(fired.wait(), timeout=10)
    finally:
        runner.shutdown()
    assert time.monotonic() - started < 5, "an hour of the demo is a second"


async def test_a_paused_clock_fires_nothing_until_resumed(database: str) -> None:
    clock = DemoClock(speed=3600)
    clock.set_paused(True)
    runner, fired = await _runner_with_a_timer(clock, timedelta(minutes=30))
    try:
        await asyncio.sleep(1.5)
        assert not fired.is_set()
        clock.set_paused(False)
        await asyncio.wait_for(fired.wait(), timeout=5)
    finally:
        runner.shutdown()


async def test_a_clock_sped_up_re_plans_the_wake_up(database: str) -> None:
    clock = DemoClock(speed=1)
    runner, fired = await _runner_with_a_timer(clock, timedelta(hours=2))
    try:
        await asyncio.sleep(0.5)
        assert not fired.is_set()
        clock.set_speed(3600)
        await asyncio.wait_for(fired.wait(), timeout=6)
    finally:
        runner.shutdown()


async def test_on_a_fast_clock_the_safety_net_passes_as_often_in_the_clocks_own_time(
    database: str,
) -> None:
    # A timer set where nothing pokes the runner (a route, an effect's follow-up) is found by
    # the safety pass: every 60 s of the demo's time is a sixtieth of a real second at 3600x.
    clock = DemoClock(speed=3600)
    runner, fired = await _runner_with_a_timer(clock, timedelta(minutes=10), poke=False)
    started = time.monotonic()
    try:
        await asyncio.wait_for(fired.wait(), timeout=10)
    finally:
        runner.shutdown()
    assert time.monotonic() - started < 5, "not a minute of real time later"
