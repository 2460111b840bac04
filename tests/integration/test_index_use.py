"""Years of data, same speed: every statement of availability, of a renter's turn and of the
ops commands that read is served by an index on PostgreSQL, never by a scan of a table that
grows with the business (bookings, renters, messages, audit events, codes, payments).

The plans are those PostgreSQL makes for the statements exactly as Keyturn sent them, explained
with sequential scans priced out (``tests.plans``): a few rows are enough to tell whether an
index can serve a statement at all."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError

from bot.app import Runtime
from bot.cli import DEMO_INVENTORY
from flows.bookings import alternatives, blocked_range, is_free
from flows.inventory import apply_inventory, load_inventory
from storage.models import AccessCode, AccessCodeState, Asset, Booking, BookingState, Lock
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.integration.ops_harness import (
    OWNER,
    Ops,
    a_regular_with_twelve_rentals,
    altstadt_booking,
    ops_app,
)
from tests.plans import captured, explain, indexes_used, scanning
from tests.support import RecordingChannel, a_renter, inbound, rental_times

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def _book(asset: Asset, renter_id: int, hours: float, state: BookingState) -> Booking:
    start = FakeClock().now() + timedelta(hours=hours)
    return await Booking.create(
        reference=f"KT{int(hours * 10)}{state.value[:3]}".upper()[:12],
        renter_id=renter_id,
        asset=asset,
        **await rental_times(asset.id, start, start + timedelta(hours=4)),
        state=state,
        currency="USD",
        price_cents=5000,
    )


@ON_POSTGRES
async def test_availability_reads_the_items_bookings_and_lapsing_codes_by_index(
    database: str, clock: FakeClock
) -> None:
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    asset = await Asset.get(code="T1").prefetch_related("location")
    renter = await a_renter()
    await _book(asset, renter.id, 2, BookingState.CONFIRMED)
    cancelled = await _book(asset, renter.id, 30, BookingState.CANCELLED)
    lock = await Lock.filter(asset_mappings__asset_id=asset.id, shared=False).first()
    assert lock is not None
    await AccessCode.create(
        booking=cancelled,
        lock=lock,
        pin_encrypted="sealed",
        starts_at=cancelled.blocked_from,
        ends_at=cancelled.blocked_until + timedelta(minutes=45),
        state=AccessCodeState.REMOVED,
        offline=True,
        provider_ref="offline-1",
    )
    start = clock.now() + timedelta(hours=10)
    with captured() as seen:
        assert await is_free(asset.id, blocked_range(asset, start, start + timedelta(hours=4)))
        assert await alternatives(asset, start, start + timedelta(hours=4), now=clock.now())
    plans = await explain(database, seen.statements)

    assert not scanning(plans), "\n\n".join(scanning(plans))
    # One statement each: the item's bookings and its lapsing offline codes, both by index.
    assert len(plans) == 2, [p.sql for p in plans]
    for plan in plans:
        assert "booking_asset_until" in indexes_used([plan]), plan.text
        assert "Scan on access_code" in plan.text.replace("Index Only ", "Index "), plan.text


@ON_POSTGRES
async def test_a_renters_booking_turns_scan_no_large_table(
    runtime: Runtime, database: str, clock: FakeClock
) -> None:
    sms = RecordingChannel("sms")
    runtime.channels["sms"] = sms
    day = (clock.now() + timedelta(days=2)).strftime("%d %B %Y")
    with captured() as seen:
        for text in ("hi", f"BOOK T1 {day} 10-14", "YES", "STATUS", "HELP"):
            await runtime.engine.handle(inbound(text, channel="sms", at=clock.now()))
            await runtime.dispatcher.run_once()
    plans = await explain(database, seen.statements)

    assert any("pay" in text.lower() for text in sms.texts()), sms.texts()
    assert seen.touching("booking") and seen.touching("message"), "the turns read and wrote"
    assert not scanning(plans), "\n\n".join(scanning(plans))


@pytest.fixture
async def ops(tmp_path: Path, sqlite_template: Path, postgres_url: str) -> AsyncIterator[Ops]:
    async with ops_app(tmp_path, sqlite_template, postgres_url=postgres_url) as started:
        yield started


#: Each reading command, and the indexes its lookups must name.
READING = [
    ("/today", {"booking_start", "booking_end"}),
    ("/booking KBIKE01", {"booking_reference_key", "payment_booking"}),
    ("/find 15112345678", {"renter_phone_trigram", "booking_renter_start"}),
    ("/find Rita", {"renter_name_trigram", "booking_renter_start"}),
    ("/audit KBIKE01", {"audit_event_subject_at"}),
    ("/locks", set()),
]


@pytest.mark.parametrize(("command", "indexes"), READING)
async def test_each_reading_ops_command_is_served_by_indexes(
    ops: Ops, postgres_url: str, command: str, indexes: set[str]
) -> None:
    await altstadt_booking(ops)
    with captured() as seen:
        answer = await ops.command(OWNER, command)
    assert answer and "not found" not in answer.lower(), answer
    plans = await explain(postgres_url, seen.statements)

    assert not scanning(plans), "\n\n".join(scanning(plans))
    missing = indexes - indexes_used(plans)
    assert not missing, f"{missing} unused:\n\n" + "\n\n".join(f"{p.sql}\n{p.text}" for p in plans)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlites_overlap_check_seeks_the_items_bookings_from_the_new_ones_start(
    database: str, clock: FakeClock
) -> None:
    """SQLite has no exclusion constraint: triggers refuse an overlapping booking. Their check
    reads the item's bookings through ``booking_asset_until`` from a day before the new range
    (a seek on both of its columns), not every booking the item ever had."""
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    asset = await Asset.get(code="T1")
    renter = await a_renter()
    taken = await _book(asset, renter.id, 2, BookingState.CONFIRMED)
    with pytest.raises(IntegrityError, match="booking_no_overlap"):
        await _book(asset, renter.id, 3, BookingState.AWAITING_PAYMENT)

    path = database.removeprefix("sqlite://")
    with closing(sqlite3.connect(path)) as raw:
        (root,) = raw.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'booking_asset_until'"
        ).fetchone()
        program = raw.execute(
            "EXPLAIN UPDATE booking SET state = 'confirmed' WHERE id = ?", (taken.id,)
        ).fetchall()
    # (addr, opcode, p1, p2, p3, p4, p5, comment): the cursor opened on the index, and a seek
    # on it by two key columns (the item, and the end of the range).
    cursors = {row[2] for row in program if row[1] == "OpenRead" and row[3] == root}
    seeks = [row for row in program if row[1].startswith("Seek") and row[2] in cursors]
    assert cursors and any(str(row[5]) == "2" for row in seeks), "\n".join(map(str, program))


async def test_find_on_postgresql_shows_a_regulars_five_latest_bookings(ops: Ops) -> None:
    newest_first = await a_regular_with_twelve_rentals(ops)
    answer = await ops.command(OWNER, "/find Rita")
    shown = [part.split()[0] for part in answer.split(": ", 1)[1].split(", ")]
    assert shown == newest_first[:5], answer
