"""Upgrading a database that is in use: every migration applies on tables that hold rows."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tortoise import Tortoise
from tortoise.migrations.api.migrate import migrate as tortoise_migrate

from storage import db
from tests.conftest import asyncpg_url, scratch_postgres

#: The tables, parents first, that a database migrated up to 0003 fills in before upgrading.
TABLES = (
    "location",
    "renter",
    "asset",
    "booking",
    "payment",
    "conversation",
    "message",
    "outbox_effect",
    "timer",
)
BEFORE = "models.0003_simulated_locks"
#: Columns whose values the models read back as enums.
KNOWN = {
    ("booking", "state"): "confirmed",
    ("outbox_effect", "state"): "pending",
    ("timer", "state"): "done",
    ("message", "direction"): "out",
}


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'old.sqlite3'}"
        return
    with scratch_postgres(f"keyturn_upgrade_{os.getpid()}") as url:
        yield url


def _value(table: str, column: str, kind: str, row: int) -> Any:
    """A value for a required column, by its type; foreign keys point at row 1 of their table."""
    if (table, column) in KNOWN:
        return KNOWN[table, column]
    kind = kind.lower()
    if column.endswith("_id") or kind in ("integer", "int", "bigint", "smallint"):
        return 1
    if "bool" in kind:
        return False
    if "timestamp" in kind or "datetime" in kind:
        # Ends after starts: a booking's window must be a proper range.
        hour = 14 if column.startswith("end") else 10
        return f"2026-06-0{row} {hour}:00:00+00:00"
    if "json" in kind:
        return "{}"
    if "numeric" in kind or "decimal" in kind or "real" in kind:
        return 1
    return f"x{row}"  # short: some columns are CHAR(3)


def _native(kind: str, value: Any) -> Any:
    """asyncpg takes a timestamp as a datetime, not as text."""
    return datetime.fromisoformat(value) if "timestamp" in kind else value


async def _fill_postgres(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        for table in TABLES:
            columns = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = $1 AND is_nullable = 'NO' AND column_default IS NULL"
                " AND is_identity = 'NO'",
                table,
            )
            names = [c["column_name"] for c in columns]
            values = [_value(table, c["column_name"], c["data_type"], 1) for c in columns]
            marks = ", ".join(f"${i}" for i in range(1, len(names) + 1))
            await conn.execute(
                f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({marks})',  # noqa: S608
                *[_native(c["data_type"], v) for c, v in zip(columns, values, strict=True)],
            )
    finally:
        await conn.close()


def _fill_sqlite(url: str) -> None:
    conn = sqlite3.connect(url.removeprefix("sqlite://"))
    try:
        for table in TABLES:
            columns = [
                (name, kind)
                for _, name, kind, notnull, default, pk in conn.execute(
                    f'PRAGMA table_info("{table}")'
                )
                if notnull and default is None and not pk
            ]
            names = ", ".join(name for name, _ in columns)
            marks = ", ".join("?" for _ in columns)
            conn.execute(
                f'INSERT INTO "{table}" ({names}) VALUES ({marks})',  # noqa: S608
                [_value(table, name, kind, 1) for name, kind in columns],
            )
        conn.commit()
    finally:
        conn.close()


MIGRATIONS = Path(db.__file__).parent / "migrations"


async def test_a_database_with_rows_upgrades_to_the_latest_schema(fresh_url: str) -> None:
    try:
        await tortoise_migrate(config=db.tortoise_config(fresh_url), target=BEFORE)
    finally:
        await Tortoise.close_connections()
    if fresh_url.startswith("sqlite"):
        _fill_sqlite(fresh_url)
    else:
        await _fill_postgres(fresh_url)

    applied = await db.migrate(fresh_url)

    latest = sorted(p.stem for p in MIGRATIONS.glob("0*.py"))[-1]
    assert applied and applied[-1] == f"models.{latest}", applied
    await db.open_database(fresh_url)
    try:
        from storage.models import Message, OutboxEffect, Payment, Timer

        assert (await Payment.get()).details == {}
        assert (await Message.get()).sealed is False
        assert (await OutboxEffect.get()).claimed_by == ""
        assert (await Timer.get(id=1)).claimed_by == ""  # a return check joins it (0018)
    finally:
        await db.close_database()


async def _book_right_after_the_first(url: str) -> None:
    """A second booking of the first one's item, starting where it ends (allowed before 0009)."""
    start, end = "2026-06-01 14:00:00+00:00", "2026-06-01 16:00:00+00:00"
    copy = (
        "INSERT INTO booking (reference, renter_id, asset_id, start_at, end_at, state, currency,"
        " price_cents, deposit_cents, cancel_reason, created_at, updated_at)"
        " SELECT 'next', renter_id, asset_id, {}, {}, state, currency, price_cents, deposit_cents,"
        " cancel_reason, created_at, updated_at FROM booking WHERE id = 1"
    )
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite://"))
        try:
            conn.execute(copy.format("?", "?"), [start, end])
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(asyncpg_url(url))
    try:
        await pg.execute(
            copy.format("$1", "$2"), _native("timestamp", start), _native("timestamp", end)
        )
    finally:
        await pg.close()


async def test_existing_bookings_take_their_buffers_and_back_to_back_ones_still_upgrade(
    fresh_url: str,
) -> None:
    try:
        await tortoise_migrate(config=db.tortoise_config(fresh_url), target=BEFORE)
    finally:
        await Tortoise.close_connections()
    if fresh_url.startswith("sqlite"):
        _fill_sqlite(fresh_url)
    else:
        await _fill_postgres(fresh_url)
    await _book_right_after_the_first(fresh_url)

    await db.migrate(fresh_url)

    await db.open_database(fresh_url)
    try:
        from storage.models import Booking

        first, second = await Booking.all().order_by("start_at")
        minute = timedelta(minutes=1)  # the filled location's buffers; the item has none
        # The first keeps its buffer before; its buffer after would reach into the second's
        # rental, so it stops where that starts, and the second's range begins there.
        assert (first.blocked_from, first.blocked_until) == (first.start_at - minute, first.end_at)
        assert (second.blocked_from, second.blocked_until) == (first.end_at, second.end_at + minute)

    finally:
        await db.close_database()


async def test_sandbox_conversations_are_given_renters_of_their_own(fresh_url: str) -> None:
    try:
        await tortoise_migrate(
            config=db.tortoise_config(fresh_url), target="models.0008_access_code_booking_index"
        )
    finally:
        await Tortoise.close_connections()
    from storage.models import Conversation, Renter

    await db.open_database(fresh_url)
    try:
        real = await Renter.create(phone="+15550100001", name="Rita", language="es")
        await Conversation.create(channel="sms", address="+15550100001", renter=real)
        await Conversation.create(channel="sandbox", address="+15550100001", renter=real)
        visitor = await Renter.create(phone="+15550100002", name="Sam")
        await Conversation.create(channel="sandbox", address="+15550100002", renter=visitor)
    finally:
        await db.close_database()

    await db.migrate(fresh_url)

    await db.open_database(fresh_url)
    try:
        sms = await Conversation.get(channel="sms", address="+15550100001")
        split = await Conversation.get(channel="sandbox", address="+15550100001")
        assert sms.renter_id == real.id and split.renter_id not in (None, real.id)
        own = await Renter.get(id=split.renter_id)
        assert (own.phone, own.name, own.language) == (None, "Rita", "es")
        assert (await Renter.get(id=real.id)).phone == "+15550100001"
        alone = await Conversation.get(channel="sandbox", address="+15550100002")
        assert alone.renter_id == visitor.id
        assert (await Renter.get(id=visitor.id)).phone is None, "the number is free for its owner"
    finally:
        await db.close_database()


@pytest.mark.parametrize("fresh_url", ["postgres"], indirect=True)
async def test_the_lookup_indexes_are_built_while_renters_keep_booking(fresh_url: str) -> None:
    """A running Keyturn keeps writing while the upgrade builds its indexes: the build waits for
    the transactions already open on the table instead of making every new write wait behind
    it, and the indexes it leaves are valid."""
    try:
        await tortoise_migrate(
            config=db.tortoise_config(fresh_url), target="models.0012_location_lead_times"
        )
    finally:
        await Tortoise.close_connections()
    open_turn = await asyncpg.connect(asyncpg_url(fresh_url))
    next_turn = await asyncpg.connect(asyncpg_url(fresh_url))
    try:
        await open_turn.execute(_TWO_BOOKINGS)
        # A turn in flight: its transaction has written to the booking table and is still open.
        turn = open_turn.transaction()
        await turn.start()
        await open_turn.execute("UPDATE booking SET price_cents = price_cents + 1 WHERE id = 1")
        upgrade = asyncio.create_task(db.migrate(fresh_url))
        await _until_waiting(next_turn, "CREATE INDEX CONCURRENTLY")
        # Meanwhile the next turn writes to the same table at once.
        async with asyncio.timeout(5):
            await next_turn.execute("UPDATE booking SET cancel_reason = 'moved' WHERE id = 2")
        assert not upgrade.done(), "the index build waits for the turn in flight"
        await turn.commit()
        applied = await asyncio.wait_for(upgrade, 60)
        assert applied[:2] == ["models.0013_lookup_indexes", "models.0014_retention_indexes"]
        invalid = await next_turn.fetch(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid"
        )
        assert invalid == []
        names = {r[0] for r in await next_turn.fetch("SELECT indexname FROM pg_indexes")}
        assert {
            "booking_asset_until",
            "renter_name_trigram",
            "message_conversation",
            "message_with_body",
            "timer_finished",
        } <= names
    finally:
        await open_turn.close()
        await next_turn.close()


_TWO_BOOKINGS = """
INSERT INTO location (slug, name, address, timezone, buffer_before_minutes, buffer_after_minutes,
                      opening_rules, created_at, updated_at)
    VALUES ('harbor', 'Harbor', '', 'UTC', 0, 0, '{}', now(), now());
INSERT INTO asset (code, label, location_id, currency, price_per_hour_cents, price_per_day_cents,
                   deposit_cents, min_duration_minutes, max_duration_minutes, active, created_at,
                   updated_at)
    VALUES ('T1', 'Trailer', 1, 'EUR', 1000, 0, 0, 60, 600, true, now(), now());
INSERT INTO renter (phone, name, opted_out, created_at, updated_at)
    VALUES ('+4915100000001', 'Rita', false, now(), now());
INSERT INTO booking (reference, renter_id, asset_id, start_at, end_at, blocked_from, blocked_until,
                     state, currency, price_cents, deposit_cents, cancel_reason, created_at,
                     updated_at)
    SELECT 'K' || g, 1, 1, t, t + interval '2 hours', t, t + interval '2 hours', 'confirmed',
           'EUR', 2000, 0, '', now(), now()
    FROM generate_series(1, 2) g, LATERAL (SELECT now() + g * interval '1 day' AS t) s;
"""

WAITING = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND wait_event_type = 'Lock'"


async def _until_waiting(conn: asyncpg.Connection, statement: str) -> None:
    """Until another session runs ``statement`` and waits on a lock (polled: the wait is in
    another process)."""
    async with asyncio.timeout(30):
        while not await conn.fetchval(WAITING, f"{statement}%"):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_rentals_from_before_return_tracking_are_brought_under_its_rules(
    fresh_url: str,
) -> None:
    """Upgrading with years of bookings: the ones that ended by the old rules count as
    returned at their end, so a renter's RETURN or a GPS homecoming never finds them; one
    under way gets its return check; a held deposit its look before the hold lapses."""
    try:
        await tortoise_migrate(
            config=db.tortoise_config(fresh_url), target="models.0017_condition_photo_retention"
        )
    finally:
        await Tortoise.close_connections()
    from storage.models import Booking, Payment, Timer
    from tests.support import a_renter, rental_times, small_inventory

    now = datetime.now(UTC)
    await db.open_database(fresh_url)
    try:
        _harbor, _depot, trailer = await small_inventory()
        renter = await a_renter()

        async def booking(reference: str, state: str, start: datetime, deposit: str) -> Booking:
            made = await Booking.create(
                reference=reference,
                renter=renter,
                asset=trailer,
                state=state,
                currency="USD",
                price_cents=5000,
                deposit_cents=10000,
                **await rental_times(trailer.id, start, start + timedelta(hours=4)),
            )
            await Payment.create(
                booking=made,
                provider="stripe",
                purpose="deposit",
                amount_cents=10000,
                currency="USD",
                status=deposit,
                idempotency_key=f"deposit:{reference}",
            )
            return made

        old = await booking("OLD", "completed", now - timedelta(days=400), "released")
        stuck = await booking("STUCK", "completed", now - timedelta(days=30), "held")
        out = await booking("OUT", "active", now - timedelta(hours=1), "held")
        tracked = await booking("TRACKED", "completed", now - timedelta(days=2), "held")
        await Timer.create(
            kind="booking.return_check",
            key="return-check:TRACKED",
            payload={"booking": tracked.id},
            due_at=tracked.end_at,
            state="done",
            created_at=now,
        )
    finally:
        await db.close_database()

    await db.migrate(fresh_url)

    await db.open_database(fresh_url)
    try:
        old_row, stuck_row, out_row, tracked_row = [
            await Booking.get(id=b.id) for b in (old, stuck, out, tracked)
        ]
        assert old_row.returned_at == old.end_at and old_row.return_checklist_at == old.end_at
        assert stuck_row.returned_at == stuck.end_at
        assert out_row.returned_at is None, "still out: its return is to come"
        assert tracked_row.returned_at is None, "returned under the new rules, or not at all"
        pending = {t.key: t for t in await Timer.filter(state="pending").order_by("key")}
        assert set(pending) == {
            "damage-review:STUCK",
            "hold-lapse:OUT",
            "hold-lapse:STUCK",
            "hold-lapse:TRACKED",
            "return-check:OUT",
        }
        assert pending["damage-review:STUCK"].due_at <= datetime.now(UTC)
        assert pending["return-check:OUT"].due_at == out.end_at + timedelta(minutes=15)
        assert pending["return-check:OUT"].payload == {"booking": out.id}
        assert pending["hold-lapse:OUT"].kind == "booking.deposit_hold_lapse"
        assert pending["hold-lapse:OUT"].payload == {"booking": out.id}
    finally:
        await db.close_database()
