"""The ops /extend beside a paid extension another worker is applying (PostgreSQL, where two
workers' transactions run at once): the staff member's hours add to the end the booking has
once that extension commits, never to the end it had before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from storage.models import Booking, Extension
from tests.conftest import asyncpg_url
from tests.integration.ops_harness import OWNER, Ops, altstadt_booking, ops_app


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path, postgres_url: str) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template, postgres_url=postgres_url) as started:
        yield started


async def test_a_staff_extension_adds_to_the_end_a_paid_extension_just_set(
    ops: Ops, postgres_url: str
) -> None:
    booking = await altstadt_booking(ops)
    paid_until = booking.end_at + timedelta(hours=3)
    other = await asyncpg.connect(asyncpg_url(postgres_url))
    try:
        transaction = other.transaction()
        await transaction.start()
        # Another worker applies the renter's paid 3 hours and has not committed yet.
        await other.execute(
            "UPDATE booking SET end_at = $2, blocked_until = blocked_until + interval '3 hours'"
            " WHERE id = $1",
            booking.id,
            paid_until,
        )
        answered = asyncio.create_task(ops.command(OWNER, "/extend KBIKE01 1h"))
        for _ in range(100):
            waiting = await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting or answered.done():
                break
            await asyncio.sleep(0.05)
        await transaction.commit()
    finally:
        await other.close()
    answer = await answered
    assert "now ends" in answer, answer
    await booking.refresh_from_db()
    assert booking.end_at == paid_until + timedelta(hours=1), "the paid hours are kept"
    staff = await Extension.get(booking=booking)
    assert (staff.old_end_at, staff.new_end_at) == (paid_until, paid_until + timedelta(hours=1))
    assert await Booking.filter(id=booking.id, state="confirmed").exists()
