"""A rental timer that fires as another worker changes its booking: the end of a booking just
extended does not complete it, and a booking just cancelled gets no PIN or reminder. The timer
handler reads without a transaction; what it writes checks the booking again, in the runner's
transaction. Only PostgreSQL runs another worker's transaction beside the timer runner's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from bot.app import Runtime
from flows.booking import DELIVER_PIN_TIMER
from flows.booking.common import END_TIMER, ENDING_TIMER
from flows.effects import Outcome, SetTimer
from flows.staging import run_unit
from storage.models import AuditEvent, Booking, BookingState, Conversation, Message, Renter
from tests.conftest import FakeClock, asyncpg_url
from tests.integration.conftest import END, START, confirmed_booking, settle

PHONE = "+15550100001"  # the renter of confirmed_booking


#: Races between two workers' transactions: only PostgreSQL runs two at once (SQLite runs one
#: transaction at a time, so no other write can come between), so these run there alone.
ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def postgres(database: str) -> str:
    assert database.startswith("postgres")
    return database


async def rental(runtime: Runtime, timer: str, key: str, due: Any) -> Booking:
    """KT1001, confirmed, its renter texting by SMS, with ``timer`` due at ``due``."""
    booking = await confirmed_booking(runtime)
    renter = await Renter.get(phone=PHONE)
    await Conversation.create(channel="sms", address=PHONE, renter=renter)
    timers = [SetTimer(timer, due, f"{key}:{booking.reference}", {"booking": booking.id})]

    async def stage(_: Any) -> Outcome:
        return Outcome(timers=timers)

    await run_unit(stage, runtime.clock.now())
    return booking


@asynccontextmanager
async def another_worker(database: str, statement: str, *args: Any) -> AsyncIterator[None]:
    """Another worker's transaction that has run ``statement`` on the booking and not
    committed yet; it commits when the block ends."""
    other = await asyncpg.connect(asyncpg_url(database))
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute(statement, *args)
        yield
        await transaction.commit()
    finally:
        await other.close()


async def fire_beside(database: str, runtime: Runtime, statement: str, *args: Any) -> None:
    """Run the due timers while another worker's change to the booking is uncommitted: the
    timer's handler reads the booking as it was; the change commits while its write waits
    on the booking's row (or, when the write does not look at the booking, after it)."""
    async with another_worker(database, statement, *args):
        fired = asyncio.create_task(runtime.timers.run_due())
        watcher = await asyncpg.connect(asyncpg_url(database))
        try:
            for _ in range(100):
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting or fired.done():
                    break
                await asyncio.sleep(0.05)
        finally:
            await watcher.close()
    await fired
    await settle(runtime)


async def told(fragment: str) -> list[str]:
    return [m.body for m in await Message.filter(direction="out") if fragment in m.body]


@ON_POSTGRES
async def test_the_end_of_a_booking_extended_as_it_fires_does_not_complete_it(
    postgres: str, runtime: Runtime, clock: FakeClock
) -> None:
    booking = await rental(runtime, END_TIMER, "end", END)
    clock.current = END
    extended = END + timedelta(hours=2)
    await fire_beside(
        postgres,
        runtime,
        "UPDATE booking SET end_at = $2, blocked_until = blocked_until + interval '2 hours'"
        " WHERE id = $1",
        booking.id,
        extended,
    )
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED, "the rental goes on to its new end"
    assert booking.end_at == extended
    assert await told("Thank you for renting") == []
    assert not await AuditEvent.filter(action="booking.completed").exists()


@ON_POSTGRES
async def test_a_pin_due_as_the_booking_is_cancelled_is_not_sent(
    postgres: str, runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await rental(runtime, DELIVER_PIN_TIMER, "pin", START - timedelta(hours=1))
    await settle(runtime)  # the codes are set on the lock
    clock.current = START - timedelta(hours=1)
    await fire_beside(
        postgres,
        runtime,
        "UPDATE booking SET state = 'cancelled', cancelled_at = $2 WHERE id = $1",
        booking.id,
        clock.now(),
    )
    assert not await Message.filter(direction="out", sealed=True).exists(), "no PIN went out"
    assert not await AuditEvent.filter(action="booking.pin_sent").exists()


@ON_POSTGRES
async def test_an_ending_reminder_for_a_booking_cancelled_as_it_fires_is_not_sent(
    postgres: str, runtime: Runtime, clock: FakeClock
) -> None:
    due = END - timedelta(minutes=30)
    booking = await rental(runtime, ENDING_TIMER, "ending", due)
    clock.current = due
    await fire_beside(
        postgres,
        runtime,
        "UPDATE booking SET state = 'cancelled', cancelled_at = $2 WHERE id = $1",
        booking.id,
        clock.now(),
    )
    assert await told("Your rental ends") == []


async def test_the_end_still_completes_a_booking_nobody_changed(
    runtime: Runtime, clock: FakeClock
) -> None:
    """On either database, the end timer of a booking left alone completes it once."""
    booking = await rental(runtime, END_TIMER, "end", END)
    clock.current = END
    await settle(runtime)
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    assert len(await told("Thank you for renting")) == 1
