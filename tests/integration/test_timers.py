"""Durable timers: fire after a restart, fire once across workers, wake at their due time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

from bot.timers import TimerRunner
from flows.clock import SystemClock
from flows.effects import Audit, Effect, Outcome
from flows.timers import TimerFired
from storage import db
from storage.models import AuditEvent, OutboxEffect, Timer, TimerState
from storage.timers import cancel_timer, set_timer
from tests.conftest import TABLES, FakeClock


class Recorder:
    def __init__(self) -> None:
        self.fired: list[int] = []

    async def __call__(self, event: TimerFired) -> Outcome:
        self.fired.append(event.timer_id)
        await asyncio.sleep(0)  # let the other worker interleave
        return Outcome(
            effects=[Effect("poke", key=f"timer-effect:{event.timer_id}")],
            audits=[Audit("timer", "timer.fired", subject=f"timer:{event.timer_id}")],
        )


async def _set(now: datetime, due: datetime, key: str | None = None, kind: str = "remind") -> None:
    async with in_transaction() as conn:
        await set_timer(conn, kind=kind, due_at=due, now=now, key=key)


async def test_a_timer_due_while_down_fires_after_restart(database: str, clock: FakeClock) -> None:
    await _set(clock.now(), clock.now() + timedelta(minutes=10))
    first = Recorder()
    assert await TimerRunner(clock, {"remind": first}).run_due() == 0
    clock.advance(timedelta(hours=3))  # the service was down past the due time
    restarted = Recorder()
    runner = TimerRunner(clock, {"remind": restarted})
    assert await runner.run_due() == 1
    assert await runner.run_due() == 0
    assert len(restarted.fired) == 1 and first.fired == []
    timer = await Timer.get()
    assert timer.state == TimerState.DONE and timer.fired_at == clock.now()
    assert await OutboxEffect.filter(idempotency_key=f"timer-effect:{timer.id}").count() == 1


async def test_a_keyed_timer_moves_instead_of_doubling(database: str, clock: FakeClock) -> None:
    await _set(clock.now(), clock.now() + timedelta(minutes=5), key="hold:1")
    await _set(clock.now(), clock.now() + timedelta(minutes=30), key="hold:1")
    assert await Timer.filter(state=TimerState.PENDING).count() == 1
    recorder = Recorder()
    runner = TimerRunner(clock, {"remind": recorder})
    clock.advance(timedelta(minutes=10))
    assert await runner.run_due() == 0
    clock.advance(timedelta(minutes=25))
    assert await runner.run_due() == 1
    await _set(clock.now(), clock.now() + timedelta(minutes=5), key="hold:1")  # key reusable
    async with in_transaction() as conn:
        assert await cancel_timer(conn, "hold:1")
    clock.advance(timedelta(hours=1))
    assert await runner.run_due() == 0


async def test_a_failing_handler_is_retried_later(database: str, clock: FakeClock) -> None:
    calls = 0

    async def flaky(event: TimerFired) -> Outcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("lock cloud down")
        return Outcome()

    await _set(clock.now(), clock.now())
    runner = TimerRunner(clock, {"remind": flaky})
    assert await runner.run_due() == 0
    assert await runner.run_due() == 0, "not again before the backoff"
    clock.advance(timedelta(minutes=1))
    assert await runner.run_due() == 1
    assert calls == 2


async def test_the_scheduler_wakes_the_runner_at_the_due_time(database: str) -> None:
    clock = SystemClock()
    fired = asyncio.Event()

    async def handler(event: TimerFired) -> Outcome:
        fired.set()
        return Outcome()

    runner = TimerRunner(clock, {"remind": handler}, safety_interval=60)
    runner.start()
    try:
        await asyncio.sleep(0.2)  # the start-up pass has found nothing
        await _set(clock.now(), clock.now() + timedelta(milliseconds=300))
        runner.poke()
        await asyncio.wait_for(fired.wait(), timeout=10)
    finally:
        runner.shutdown()


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[str]:
    await db.open_database(postgres_url)
    await db.connection().execute_script(
        "TRUNCATE " + ", ".join(f'"{t}"' for t in TABLES) + " RESTART IDENTITY CASCADE"
    )
    try:
        yield postgres_url
    finally:
        await db.close_database()


async def test_two_workers_on_postgres_fire_1000_timers_exactly_once(postgres: str) -> None:
    clock = FakeClock(datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    due = clock.now() - timedelta(seconds=1)
    await Timer.bulk_create(
        [Timer(kind="remind", due_at=due, created_at=due, payload={"n": n}) for n in range(1000)]
    )
    first, second = Recorder(), Recorder()
    runners = [
        TimerRunner(clock, {"remind": first}, batch_size=5),
        TimerRunner(clock, {"remind": second}, batch_size=5),
    ]
    counts = await asyncio.gather(*(runner.run_due() for runner in runners))
    fired = first.fired + second.fired
    assert sum(counts) == 1000
    assert len(fired) == 1000 and len(set(fired)) == 1000, "no timer may fire twice"
    assert first.fired and second.fired, "both workers took a share"
    assert await Timer.filter(state=TimerState.PENDING).count() == 0, "none left behind"
    assert await AuditEvent.filter(action="timer.fired").count() == 1000


async def test_workers_starting_together_set_a_recurring_timer_once(
    database: str, clock: FakeClock
) -> None:
    from storage.timers import ensure_timer

    # Each start-up sets it or finds it set; none fails, and there is one timer.
    await asyncio.gather(
        *(
            ensure_timer(kind="remind", key="every-day", due_at=clock.now(), now=clock.now())
            for _ in range(5)
        )
    )
    assert await Timer.filter(key="every-day").count() == 1


class Held(Recorder):
    """A handler that waits for ``release`` on its first call, as a slow lock cloud would."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, event: TimerFired) -> Outcome:
        if not self.fired:
            self.started.set()
            await self.release.wait()
        return await super().__call__(event)


async def test_a_firing_that_outlasted_its_lease_leaves_the_timer_to_the_newer_claim(
    database: str, clock: FakeClock
) -> None:
    await _set(clock.now(), clock.now())
    slow, fast = Held(), Recorder()
    lease = timedelta(minutes=2)
    slow_run = asyncio.create_task(
        TimerRunner(clock, {"remind": slow}, lease=lease, worker="box-a/41").run_due()
    )
    await asyncio.wait_for(slow.started.wait(), 5)
    clock.advance(lease + timedelta(seconds=1))
    assert await TimerRunner(clock, {"remind": fast}, worker="box-b/7").run_due() == 1
    slow.release.set()
    assert await slow_run == 0, "the late firing does not count"
    timer = await Timer.get()
    assert timer.state == TimerState.DONE and timer.claimed_by == "box-b/7"
    assert await AuditEvent.filter(action="timer.fired").count() == 1, "one outcome staged"
    assert await OutboxEffect.filter(idempotency_key__startswith="timer-effect:").count() == 1


async def test_a_timer_moved_while_it_fires_stays_pending_for_its_new_time(
    database: str, clock: FakeClock
) -> None:
    await _set(clock.now(), clock.now(), key="end:1")
    handler = Held()
    run = asyncio.create_task(TimerRunner(clock, {"remind": handler}).run_due())
    await asyncio.wait_for(handler.started.wait(), 5)
    await _set(clock.now(), clock.now() + timedelta(hours=2), key="end:1")  # extended meanwhile
    handler.release.set()
    await run
    timer = await Timer.get()
    assert timer.state == TimerState.PENDING and timer.due_at == clock.now() + timedelta(hours=2)
    clock.advance(timedelta(hours=2))
    assert await TimerRunner(clock, {"remind": Recorder()}).run_due() == 1
    assert (await Timer.get()).state == TimerState.DONE


async def test_a_stopping_worker_releases_the_timers_it_had_not_fired(
    database: str, clock: FakeClock
) -> None:
    await _set(clock.now(), clock.now(), key="first")
    await _set(clock.now(), clock.now() + timedelta(seconds=1), key="second")
    clock.advance(timedelta(seconds=1))
    held = Held()
    stopping = TimerRunner(clock, {"remind": held}, worker="box-a/41")
    running = asyncio.create_task(stopping.run_due())
    await asyncio.wait_for(held.started.wait(), 5)
    assert await Timer.filter(claimed_until__gt=clock.now()).count() == 2, "both claimed"
    await stopping.stop(grace=0.1)
    assert running.cancelled()
    timers = await Timer.all().order_by("id")
    assert [(t.state, t.claimed_until) for t in timers] == [(TimerState.PENDING, None)] * 2
    # The restarted worker (or another one) fires both at once, at the same moment.
    recorder = Recorder()
    assert await TimerRunner(clock, {"remind": recorder}, worker="box-b/7").run_due() == 2
    assert {t.state for t in await Timer.all()} == {TimerState.DONE}


async def test_a_stopping_worker_does_not_release_a_timer_claim_taken_over_since(
    database: str, clock: FakeClock
) -> None:
    await _set(clock.now(), clock.now())
    held, other = Held(), Held()
    stopping = TimerRunner(clock, {"remind": held}, worker="box-a/41")
    running = asyncio.create_task(stopping.run_due())
    await asyncio.wait_for(held.started.wait(), 5)
    clock.advance(timedelta(minutes=2, seconds=1))
    newer = asyncio.create_task(TimerRunner(clock, {"remind": other}, worker="box-b/7").run_due())
    await asyncio.wait_for(other.started.wait(), 5)
    await stopping.stop(grace=0.1)
    assert running.cancelled()
    timer = await Timer.get()
    assert (timer.attempts, timer.claimed_by) == (2, "box-b/7")
    assert timer.claimed_until is not None and timer.claimed_until > clock.now()
    other.release.set()
    assert await newer == 1
