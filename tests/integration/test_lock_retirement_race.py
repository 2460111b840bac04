"""A lock retired by `keyturn inventory apply` at the instant a code is planned on it.

Two workers' transactions: only PostgreSQL runs them at once (SQLite runs one transaction at a
time), so these run there alone. Whichever commits first, no code may end up on a retired lock:
a planner that came first keeps the lock in use, a retirement that came first keeps the planner
off it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from bot.app import Runtime
from flows.inventory import apply_inventory, parse_inventory
from flows.staging import stage_outcome
from locks.windows import AccessWindow
from storage.models import (
    AccessCode,
    Asset,
    Booking,
    BookingState,
    Lock,
    Renter,
    StaffMember,
    StaffRole,
)
from storage.uow import unit_of_work
from tests.conftest import FakeClock, asyncpg_url
from tests.integration.conftest import END, START
from tests.integration.test_inventory import demo, replaced, without_block
from tests.support import rental_times

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def without_lock(key: str, asset: str) -> str:
    text = without_block(demo(), f'[[locks]]\nkey = "{key}"')
    return replaced(text, f'locks = ["{key}"]', "locks = []") if asset else text


async def waits_on_a_row_lock(database: str, task: asyncio.Task[Any]) -> None:
    """Until ``task`` is blocked on another transaction's row lock (or has finished)."""
    watcher = await asyncpg.connect(asyncpg_url(database))
    try:
        for _ in range(200):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting or task.done():
                return
            await asyncio.sleep(0.02)
    finally:
        await watcher.close()


async def held_open(work: Awaitable[None], ready: asyncio.Event, release: asyncio.Event) -> None:
    await work
    ready.set()
    await release.wait()


@ON_POSTGRES
async def test_a_lock_that_gets_a_staff_code_as_it_is_retired_is_kept(
    database: str, runtime: Runtime, clock: FakeClock
) -> None:
    lock = await Lock.get(key="altstadt-c1")
    staff = await StaffMember.create(telegram_user_id=501, name="Mo", role=StaffRole.MAINTENANCE)
    planned, release = asyncio.Event(), asyncio.Event()

    async def plan_staff_code() -> None:
        async with unit_of_work() as conn:
            now = clock.now()
            window = AccessWindow(now, now + timedelta(hours=2))
            outcome = await runtime.access.plan_staff_code(conn, staff, lock, window, "repairs")
            await stage_outcome(conn, outcome, now)
            planned.set()
            await release.wait()  # the planner's transaction is still open

    planner = asyncio.create_task(plan_staff_code())
    await planned.wait()

    async def retire() -> list[str]:
        async with unit_of_work() as conn:
            result = await apply_inventory(
                conn, parse_inventory(without_lock("altstadt-c1", "C1")), now=clock.now()
            )
        return result.kept

    retirement = asyncio.create_task(retire())
    await waits_on_a_row_lock(database, retirement)
    release.set()
    await planner
    kept = await retirement

    assert kept == ["kept lock altstadt-c1: 1 access code not yet removed uses it"], kept
    await lock.refresh_from_db()
    assert lock.retired_at is None
    assert await AccessCode.filter(lock=lock).count() == 1


@ON_POSTGRES
async def test_a_booking_confirmed_as_its_lock_is_retired_gets_no_code_on_it(
    database: str, runtime: Runtime, clock: FakeClock
) -> None:
    bay = await Lock.get(key="harbor-t1")
    retired, release = asyncio.Event(), asyncio.Event()

    async def retire() -> None:
        async with unit_of_work() as conn:
            await apply_inventory(
                conn, parse_inventory(without_lock("harbor-t1", "T1")), now=clock.now()
            )
            retired.set()
            await release.wait()  # the retirement's transaction is still open

    retirement = asyncio.create_task(retire())
    await retired.wait()
    asset = await Asset.get(code="T1")
    booking = await Booking.create(
        reference="KRACE1",
        renter=await Renter.create(phone="+15550100009"),
        asset=asset,
        **await rental_times(asset.id, START, END),
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=100,
    )

    async def plan_booking_codes() -> None:
        async with unit_of_work() as conn:
            outcome = await runtime.access.plan_booking_codes(conn, booking)
            await stage_outcome(conn, outcome, clock.now())

    planner = asyncio.create_task(plan_booking_codes())
    await waits_on_a_row_lock(database, planner)
    release.set()
    await retirement
    await planner

    await bay.refresh_from_db()
    assert bay.retired_at is not None
    codes = await AccessCode.filter(booking=booking).prefetch_related("lock")
    assert [code.lock.key for code in codes] == ["harbor-gate"], "only the gate, not the bay"
