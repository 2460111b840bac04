"""The timer runner: APScheduler wakes it at the next due time and on a short interval.

Several workers may run it against one PostgreSQL database: due rows are claimed with
``FOR UPDATE SKIP LOCKED`` and a lease, so each timer fires once; a timer claimed by a worker that
died is claimed again when the lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.dispatcher import RetryPolicy, this_worker
from bot.metrics import TIMER_LATENESS
from flows.clock import Clock, DemoClock, real_seconds
from flows.timers import TimerHandler, fire_timer
from storage.models import Timer
from storage.timers import (
    TimerTakenOver,
    claim_due_timers,
    next_due_at,
    release_timers,
    retry_timer,
)

log = logging.getLogger(__name__)

NEXT_JOB = "timers-next-due"
SAFETY_JOB = "timers-safety-net"
#: The most often (real seconds) the safety pass runs, however fast the demo's clock goes.
MIN_SAFETY_SECONDS = 0.1


class TimerRunner:
    def __init__(
        self,
        clock: Clock,
        handlers: Mapping[str, TimerHandler],
        *,
        batch_size: int = 100,
        lease: timedelta = timedelta(minutes=2),
        safety_interval: float = 5.0,
        policy: RetryPolicy | None = None,
        worker: str | None = None,
    ) -> None:
        self.clock = clock
        self.worker = worker or this_worker()
        self.handlers = dict(handlers)
        self.batch_size = batch_size
        self.lease = lease
        self.safety_interval = safety_interval
        self.policy = policy or RetryPolicy()
        self._rng = random.Random()  # noqa: S311 (jitter only, nothing secret)
        self._running = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        #: Timers claimed and not yet fired, by id: released if the worker stops first.
        self._held: dict[int, Timer] = {}
        #: Passes running now (the scheduler's jobs), so that ``stop`` can end them.
        self._passes: set[asyncio.Task[object]] = set()
        self._stopping = False
        if isinstance(clock, DemoClock):
            # The demo's clock changed pace, stopped or jumped: the wake-ups are re-planned.
            clock.on_change(self._clock_changed)

    async def run_due(self) -> int:
        """Fire every timer due now; returns how many fired."""
        task = asyncio.current_task()
        if task is not None:
            self._passes.add(task)
        try:
            return await self._run_due()
        finally:
            self._passes.discard(task)

    async def _run_due(self) -> int:
        fired = 0
        async with self._running:
            while not self._stopping:
                now = self.clock.now()
                timers = await claim_due_timers(
                    now, limit=self.batch_size, lease=self.lease, worker=self.worker
                )
                if not timers:
                    break
                self._held.update((timer.id, timer) for timer in timers)
                for timer in timers:
                    if self._stopping:
                        return fired  # the timers left are released by ``stop``
                    try:
                        await fire_timer(timer, self.handlers, self.clock.now())
                    except TimerTakenOver:
                        log.warning(
                            "timer %s (%s) outlasted its lease; the newer claim fires it",
                            timer.id,
                            timer.kind,
                        )
                    except Exception as err:
                        log.warning(
                            "timer %s (%s) failed: %s", timer.id, timer.kind, type(err).__name__
                        )
                        delay = self.policy.delay(timer.attempts, self._rng)
                        await retry_timer(timer, self.clock.now() + delay)
                    else:
                        fired += 1
                        TIMER_LATENESS.observe(
                            max((self.clock.now() - timer.due_at).total_seconds(), 0.0)
                        )
                    self._held.pop(timer.id, None)
        await self.reschedule()
        return fired

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self.run_due,
            "interval",
            seconds=self._safety_seconds(),
            id=SAFETY_JOB,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self._scheduler = scheduler

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def stop(self, grace: float = 5.0) -> None:
        """Stop: no new pass starts, a pass firing timers now stops after the timer it is on
        (given ``grace`` seconds, then cancelled), and the claims on the timers it did not
        fire are released, so they fire at once elsewhere (or after a restart) instead of
        waiting out the lease."""
        self._stopping = True
        if self._scheduler is not None:
            self._scheduler.pause()
        passes = set(self._passes)
        if passes:
            _, running = await asyncio.wait(passes, timeout=grace)
            for task in running:
                task.cancel()  # a handler that hangs
            await asyncio.gather(*running, return_exceptions=True)
        self.shutdown()
        held, self._held = list(self._held.values()), {}
        if not held:
            return
        try:
            # Bounded: a pass cancelled inside a database call may leave the connection busy.
            async with asyncio.timeout(grace):
                released = await release_timers(held, worker=self.worker)
        except TimeoutError:
            log.warning("%d timer claims were not released; their leases run out", len(held))
            return
        log.info("released %d unfired timer claims", released)

    def poke(self, due: datetime | None = None) -> None:
        """Something may have set an earlier timer (due at ``due``, when known): look again at
        the next due time. A timer due after the next safety pass needs no look."""
        if self._scheduler is None:
            return
        if due is not None and not self._soon(due):
            return
        asyncio.get_running_loop().create_task(self.reschedule())

    def _real_wait(self, due: datetime) -> float | None:
        """Real seconds until ``due`` comes on the clock (the demo's may run fast or be paused:
        None, never)."""
        wait = real_seconds(self.clock, (due - self.clock.now()).total_seconds())
        return None if wait is None else max(wait, 0.0)

    def _soon(self, due: datetime) -> bool:
        """Due before the next safety pass would find it."""
        wait = self._real_wait(due)
        return wait is not None and wait < self._safety_seconds()

    def _safety_seconds(self) -> float:
        """Real seconds between safety passes: ``safety_interval`` of the clock's own time, so
        that a timer set where nothing pokes the runner (a route, an effect's follow-up) is as
        late on the demo's fast clock as on the real one (down to a floor of real time)."""
        wait = real_seconds(self.clock, self.safety_interval)
        return self.safety_interval if wait is None else max(wait, MIN_SAFETY_SECONDS)

    def _clock_changed(self) -> None:
        if self._scheduler is not None:
            self._scheduler.reschedule_job(
                SAFETY_JOB, trigger="interval", seconds=self._safety_seconds()
            )
        self.poke()

    async def reschedule(self) -> None:
        if self._scheduler is None:
            return
        due = await next_due_at()
        if due is None:
            return
        # The scheduler runs on wall time. An injected clock that runs ahead or behind still
        # gets the job at the right distance from now; the demo's fast clock at that distance
        # divided by its speed.
        wait = self._real_wait(due)
        if wait is None or wait >= self._safety_seconds():
            return
        self._scheduler.add_job(
            self.run_due,
            "date",
            run_date=datetime.now(UTC) + timedelta(seconds=wait),
            id=NEXT_JOB,
            replace_existing=True,
            misfire_grace_time=None,
            # run_due reschedules from inside this job: with one instance allowed, the next
            # run would be skipped as "maximum number of running instances reached".
            max_instances=2,
        )
