"""Simulated renters posting signed Twilio SMS webhooks at a fixed rate, and what they measured.

The load is open: message ``i`` of a step is due at ``start + i / rate`` whatever the server is
doing, so a slow server gets a growing backlog rather than a politely slower client. Each renter
has its own phone number and runs a real journey, one message after the other: its next message
goes only once the webhook for the previous one has answered. When no renter is free, a new one
starts. Every step is bounded in messages, in time, and in requests in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp

from bot.transports.twilio_routes import INBOUND_PATH
from tests.fakes.twilio import FakeTwilio

#: (location menu number, item menu number, asset code) as the demo inventory lists them.
ITEMS: tuple[tuple[int, int, str], ...] = (
    (1, 1, "B1"),
    (1, 2, "C1"),
    (2, 1, "S1"),
    (2, 2, "T1"),
    (2, 3, "T2"),
)
SLOTS = ("8-12", "10-14", "14-18")
#: Requests a step may have waiting at once; past it a due message is counted as skipped.
MAX_IN_FLIGHT = 2000
REQUEST_TIMEOUT = 30.0


def journey(number: int, rng: random.Random) -> list[str]:
    """What renter ``number`` will say: a guided booking, a one-line booking, or a question.

    Renters book different items, days and hours, so most journeys reach a booking; some
    collide (the first one holds the slot, the other hears it is taken), as in real life.
    """
    location, item, code = ITEMS[number % len(ITEMS)]
    slot = SLOTS[(number // len(ITEMS)) % len(SLOTS)]
    day = datetime.now(UTC).date() + timedelta(days=2 + number // (len(ITEMS) * len(SLOTS)) % 300)
    when = f"{day.day} {day:%B %Y} {slot}"
    kind = rng.random()
    if kind < 0.6:
        return ["hi", str(location), str(item), when, "YES"]
    if kind < 0.9:
        return [f"BOOK {code} {when}", "YES", "CODE"]
    return ["HELP", "hello", "0"]


@dataclass
class Renter:
    phone: str
    script: list[str]
    said: int = 0


@dataclass
class StepResult:
    rate: float
    planned: int
    #: Renters posting back to back, for a closed-loop (flat out) step; 0 for a fixed rate.
    concurrency: int = 0
    sent: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0
    #: Seconds from the first send to the last answer.
    elapsed: float = 0.0
    #: Seconds from the first send to the last send (how well the client kept the schedule).
    send_span: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies, p)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


class RenterCrowd:
    """Renters across steps: the ones mid-journey continue in the next step."""

    def __init__(self, twilio: FakeTwilio, *, phone_prefix: str, seed: int = 6) -> None:
        self.twilio = twilio
        self.phone_prefix = phone_prefix
        self.rng = random.Random(seed)  # noqa: S311 (a reproducible mix, nothing secret)
        self.numbers = itertools.count()
        self.ready: deque[Renter] = deque()

    def next_renter(self) -> Renter:
        if self.ready:
            return self.ready.popleft()
        number = next(self.numbers)
        return Renter(f"{self.phone_prefix}{number:07d}", journey(number, self.rng))

    def done_with(self, renter: Renter) -> None:
        renter.said += 1
        if renter.said < len(renter.script):
            self.ready.append(renter)


async def _post(
    session: aiohttp.ClientSession,
    crowd: RenterCrowd,
    renter: Renter,
    target: str,
    result: StepResult,
) -> float:
    """Post the renter's next message and record the answer; returns when it finished."""
    form, headers = crowd.twilio.inbound(from_=renter.phone, body=renter.script[renter.said])
    began = time.perf_counter()
    try:
        async with session.post(target + INBOUND_PATH, data=form, headers=headers) as response:
            await response.read()
            status = str(response.status)
    except (aiohttp.ClientError, TimeoutError) as err:
        status = type(err).__name__
    finished = time.perf_counter()
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if status == "200":
        result.ok += 1
        result.latencies.append(finished - began)
    else:
        result.errors += 1
    crowd.done_with(renter)
    return finished


async def run_step(
    session: aiohttp.ClientSession,
    crowd: RenterCrowd,
    targets: Sequence[str],
    *,
    rate: float,
    duration: float,
) -> StepResult:
    """Post ``rate * duration`` messages at ``rate`` per second, round-robin over ``targets``."""
    planned = int(rate * duration)
    result = StepResult(rate=rate, planned=planned)
    in_flight: set[asyncio.Task[float]] = set()
    answers: list[float] = []
    start = time.perf_counter()
    deadline = start + duration + REQUEST_TIMEOUT
    targets_cycle = itertools.cycle(targets)
    for index in range(planned):
        due = start + index / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        if len(in_flight) >= MAX_IN_FLIGHT:
            result.skipped += 1
            continue
        renter, target = crowd.next_renter(), next(targets_cycle)
        task = asyncio.create_task(_post(session, crowd, renter, target, result))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        task.add_done_callback(lambda done: answers.append(done.result()))
        result.sent += 1
    result.send_span = time.perf_counter() - start
    if in_flight:
        _, pending = await asyncio.wait(
            set(in_flight), timeout=max(deadline - time.perf_counter(), 0.1)
        )
        for task in pending:
            task.cancel()
        result.errors += len(pending)
    result.elapsed = max(answers, default=time.perf_counter()) - start
    return result


async def run_saturated(
    session: aiohttp.ClientSession,
    crowd: RenterCrowd,
    targets: Sequence[str],
    *,
    concurrency: int,
    duration: float,
) -> StepResult:
    """Closed loop: ``concurrency`` renters post back to back for ``duration`` seconds.

    What the server manages flat out, i.e. its ceiling on this machine (``rate`` is reported as 0).
    """
    result = StepResult(rate=0.0, planned=0, concurrency=concurrency)
    start = time.perf_counter()
    stop_sending = start + duration
    finished: list[float] = []

    async def lane(offset: int) -> None:
        target = targets[offset % len(targets)]
        while time.perf_counter() < stop_sending:
            result.sent += 1
            finished.append(await _post(session, crowd, crowd.next_renter(), target, result))

    async with asyncio.timeout(duration + REQUEST_TIMEOUT):
        await asyncio.gather(*(lane(offset) for offset in range(concurrency)))
    result.planned = result.sent
    result.elapsed = max(finished, default=time.perf_counter()) - start
    result.send_span = result.elapsed
    return result
