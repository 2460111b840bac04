"""What ``bench/scale.py`` times, each through Keyturn's own code paths.

In this process, with the models connected (``storage.db.open_database``): availability
(``flows.bookings.is_free`` and ``alternatives``), the ops desk's reading commands as an owner
(``flows.ops.OpsDesk.run`` in a unit of work, as the ops bot runs them), and the timer and outbox
claims the workers make. Through a ``keyturn serve`` worker: renter turns posted as signed Twilio
SMS webhooks by renters of the data, alone and while retention purges. As a subprocess:
``keyturn locks reconcile``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
from tortoise.exceptions import OperationalError

from bench.load import Renter, RenterCrowd, percentile, run_step
from bench.plans import Scans, ScanWatch, captured
from bench.seed import RENTAL, Seeded, Volumes, asset_code, phone
from bot.runtime import Runtime
from flows.bookings import alternatives, blocked_range, is_free
from flows.messages import InboundMessage
from flows.retention import RETENTION_KEY, RETENTION_TIMER
from storage import db
from storage.models import Asset, AuditEvent, SimulatedCode, Timer, TimerState
from storage.outbox import claim_due_effects
from storage.retention import WITH_BODY
from storage.timers import claim_due_timers, set_timer
from storage.uow import UnitOfWork, unit_of_work
from tests.fakes.twilio import FakeTwilio

WORKER = "bench/scale"
LEASE = timedelta(minutes=2)
#: A purge still running after this long is reported as unfinished.
PURGE_LIMIT = 900.0
PURGE_STEP = 2.0
#: The retention timer is re-armed this far ahead once its pass is over (a day, by default).
PURGE_OVER = timedelta(hours=1)


@dataclass
class Sample:
    """One measure on one database: each call's seconds, and what it scanned."""

    latencies: list[float] = field(default_factory=list)
    scans: Scans | None = None
    note: str = ""

    def ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


class Measures:
    """The in-process measures over one database, each watched for large-table scans."""

    def __init__(self, runtime: Runtime, seeded: Seeded, volumes: Volumes, watch: ScanWatch):
        self.runtime = runtime
        self.seeded = seeded
        self.volumes = volumes
        self.watch = watch
        self.rng = random.Random(1015)  # noqa: S311 (reproducible picks)

    async def watched(self, samples: int, call: Callable[[int], Awaitable[object]]) -> Sample:
        before = await self.watch.counters()
        sample = Sample()
        with captured() as statements:
            for index in range(samples):
                began = time.perf_counter()
                await call(index)
                sample.latencies.append(time.perf_counter() - began)
        sample.scans = await self.watch.compare(before, statements)
        return sample

    async def all(self, samples: int, ops_samples: int) -> dict[str, Sample]:
        assets = await Asset.all().prefetch_related("location")
        results = {
            "is_free": await self.watched(samples, lambda _: self._is_free(assets)),
            "alternatives": await self.watched(samples, lambda _: self._alternatives(assets)),
        }
        for label, command, args in self._ops_commands():
            results[label] = await self.watched(ops_samples, self._ops_call(command, args))
        now = datetime.now(UTC)
        results["timer claim"] = await self.watched(
            samples, lambda _: claim_due_timers(now, limit=100, lease=LEASE, worker=WORKER)
        )
        results["outbox claim"] = await self.watched(
            samples, lambda _: claim_due_effects(now, limit=50, lease=LEASE, worker=WORKER)
        )
        return results

    def _slot(self, assets: Sequence[Asset]) -> tuple[Asset, datetime, datetime]:
        """A random item and a four-hour rental starting within the booked weeks ahead."""
        asset = self.rng.choice(assets)
        hours = self.rng.randrange(2, 24 * (self.volumes.future_days + 7))
        now = self.seeded.now.replace(minute=0, second=0, microsecond=0)
        start = now + timedelta(hours=hours)
        return asset, start, start + RENTAL

    async def _is_free(self, assets: Sequence[Asset]) -> None:
        asset, start, end = self._slot(assets)
        await is_free(asset.id, blocked_range(asset, start, end))

    async def _alternatives(self, assets: Sequence[Asset]) -> None:
        asset, start, end = self._slot(assets)
        await alternatives(asset, start, end, now=datetime.now(UTC))

    def _ops_commands(self) -> list[tuple[str, str, Callable[[int], list[str]]]]:
        refs, phones, parts = self.seeded.references, self.seeded.phones, self.seeded.name_parts
        return [
            ("/today", "today", lambda i: []),
            ("/booking <ref>", "booking", lambda i: [refs[i % len(refs)]]),
            ("/find <phone digits>", "find", lambda i: [phones[i % len(phones)][-7:]]),
            ("/find <name part>", "find", lambda i: [parts[i % len(parts)]]),
            ("/audit <ref>", "audit", lambda i: [refs[i % len(refs)]]),
            ("/locks", "locks", lambda i: []),
        ]

    def _ops_call(
        self, command: str, args: Callable[[int], list[str]]
    ) -> Callable[[int], Awaitable[None]]:
        return lambda index: self._ops(command, args(index))

    async def _ops(self, command: str, args: list[str]) -> None:
        desk = self.runtime.ops
        assert desk is not None
        async with unit_of_work() as conn:
            await desk.run(conn, self.seeded.owner_telegram_id, command, args)


# -- renter turns through a worker ------------------------------------------------------------


class SeededCrowd(RenterCrowd):
    """Renters of the seeded data, each with years of messages, saying ``journeys``' lines."""

    def __init__(self, twilio: FakeTwilio, journeys: Iterator[tuple[str, list[str]]]) -> None:
        super().__init__(twilio, phone_prefix="")
        self.journeys = journeys

    def next_renter(self) -> Renter:
        if self.ready:
            return self.ready.popleft()
        number, script = next(self.journeys)
        return Renter(number, script)


def journeys(seeded: Seeded, volumes: Volumes, seed: int) -> Iterator[tuple[str, list[str]]]:
    """A one-line booking and its YES (three in four), or HELP, from renters picked at random;
    the days asked for lie past the seeded bookings, so most bookings go through."""
    rng = random.Random(seed)  # noqa: S311
    renters = list(range(1, volumes.renters + 1))
    rng.shuffle(renters)
    today = seeded.now.date()
    # The empty database has few renters: they come back (each conversation goes on).
    for number, renter in enumerate(itertools.cycle(renters)):
        if rng.random() < 0.25:
            yield phone(renter), ["HELP"]
            continue
        day = today + timedelta(days=volumes.future_days + 10 + (number // volumes.items) % 250)
        code = asset_code(rng.randrange(volumes.items))
        yield phone(renter), [f"BOOK {code} {day.day} {day:%B %Y} 10-14", "YES"]


async def turns(
    session: aiohttp.ClientSession,
    crowd: SeededCrowd,
    target: str,
    *,
    rate: float,
    seconds: float,
    watch: ScanWatch,
) -> Sample:
    before = await watch.counters()
    step = await run_step(session, crowd, [target], rate=rate, duration=seconds)
    sample = Sample(step.latencies, await watch.compare(before, {}))
    if step.errors or step.skipped:
        sample.note = f"{step.errors} errors {step.statuses}, {step.skipped} skipped"
    return sample


async def engine_turns(
    runtime: Runtime, seeded: Seeded, volumes: Volumes, watch: ScanWatch, journeys_run: int
) -> Sample:
    """The same journeys through this process's conversation engine (``engine.handle``, what
    the webhook route calls), so that their statements are captured and explained."""
    lines = journeys(seeded, volumes, seed=16)
    # Unmeasured: this process's first turn loads what the dialog reads once (catalogs, dates).
    number, script = next(lines)
    await runtime.engine.handle(
        InboundMessage("sms", number, script[0], f"SMbench{uuid.uuid4().hex}", datetime.now(UTC))
    )
    before = await watch.counters()
    sample = Sample()
    with captured() as statements:
        for _ in range(journeys_run):
            number, script = next(lines)
            for text in script:
                message = InboundMessage(
                    "sms", number, text, f"SMbench{uuid.uuid4().hex}", datetime.now(UTC)
                )
                began = time.perf_counter()
                await runtime.engine.handle(message)
                sample.latencies.append(time.perf_counter() - began)
    sample.scans = await watch.compare(before, statements)
    return sample


async def expired_rows(now: datetime, audit_days: int, message_days: int) -> int:
    audit = await AuditEvent.filter(at__lt=now - timedelta(days=audit_days)).count()
    # Counted the way the purge chooses them (its partial index), not by a scan of the table.
    counted = f"SELECT count(*) AS n FROM message WHERE created_at < $1 AND {WITH_BODY}"  # noqa: S608
    rows = await db.connection().execute_query_dict(
        db.sql(counted), [now - timedelta(days=message_days)]
    )
    return audit + int(rows[0]["n"])


async def retention_while_chatting(
    session: aiohttp.ClientSession,
    crowd: SeededCrowd,
    target: str,
    *,
    rate: float,
    watch: ScanWatch,
    audit_days: int,
    message_days: int,
) -> Sample:
    """Make the retention timer due now; the worker's timer runner purges (in one pass or in
    batches that re-arm the timer) while renters keep posting. Over when the timer is set for
    its next day."""
    now = datetime.now(UTC)
    expired = await expired_rows(now, audit_days, message_days)
    before = await watch.counters()
    await _retrying(
        lambda conn: set_timer(conn, kind=RETENTION_TIMER, key=RETENTION_KEY, due_at=now, now=now)
    )
    began = time.perf_counter()
    sample = Sample()
    finished = None
    while time.perf_counter() - began < PURGE_LIMIT:
        step = await run_step(session, crowd, [target], rate=rate, duration=PURGE_STEP)
        sample.latencies += step.latencies
        if await _purge_over(now):
            finished = time.perf_counter() - began
            break
    sample.scans = await watch.compare(before, {})
    left = await expired_rows(now, audit_days, message_days)
    took = f"{finished:.1f} s" if finished is not None else f"not over after {PURGE_LIMIT:.0f} s"
    sample.note = (
        f"purged {expired - left:,} of {expired:,} expired rows in {took} "
        "(from the timer falling due; the runner's 5 s safety pass included)"
    )
    return sample


async def _retrying(write: Callable[[UnitOfWork], Awaitable[object]], tries: int = 100) -> None:
    """Commit ``write``, waiting while another process writes (SQLite answers "locked")."""
    for attempt in range(tries):
        try:
            async with unit_of_work() as conn:
                await write(conn)
            return
        except OperationalError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.1)


async def _purge_over(since: datetime) -> bool:
    timer = await Timer.filter(key=RETENTION_KEY, state=TimerState.PENDING).first()
    return timer is not None and timer.due_at >= since + PURGE_OVER


async def park_recurring_timers(*timers: tuple[str, str]) -> None:
    """Set recurring timers (kind, key) far ahead, so a worker starting does not run them at
    once (``keyturn serve`` ensures them due now): each measure makes its own due."""
    now = datetime.now(UTC)
    async with unit_of_work() as conn:
        for kind, key in timers:
            await set_timer(conn, kind=kind, key=key, due_at=now + timedelta(days=1), now=now)


# -- reconcile --------------------------------------------------------------------------------


async def code_creations(since: datetime) -> tuple[int, int, str]:
    """Codes the simulated locks took since ``since``: how many, the most one device took
    within any 60 seconds, and which device."""
    rows = await SimulatedCode.filter(created_at__gte=since).values_list("device_id", "created_at")
    by_device: dict[str, list[datetime]] = defaultdict(list)
    for device, at in rows:
        by_device[str(device)].append(at)
    worst, worst_device = 0, "-"
    for device, times in by_device.items():
        times.sort()
        first = 0
        for last, at in enumerate(times):
            while at - times[first] >= timedelta(seconds=60):
                first += 1
            if last - first + 1 > worst:
                worst, worst_device = last - first + 1, device
    return len(rows), worst, worst_device


async def wait_process(process: asyncio.subprocess.Process, limit: float) -> int:
    async with asyncio.timeout(limit):
        return await process.wait()
