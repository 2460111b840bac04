"""The database itself keeps bookings from overlapping and provider events from repeating."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tortoise.exceptions import IntegrityError

from storage import db
from storage.models import Asset, Booking, BookingState, ProcessedWebhook
from tests.support import a_renter, rental_times, small_inventory

START = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


async def _book(
    asset: Asset, start: datetime, hours: int, state: BookingState, ref: str
) -> Booking:
    renter = await a_renter(phone=f"+1555010{len(ref):04d}{ref[-1]}")
    return await Booking.create(
        reference=ref,
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, start, start + timedelta(hours=hours)),
        state=state,
        currency="USD",
        price_cents=1000,
    )


async def test_overlapping_bookings_of_one_asset_are_refused(database: str) -> None:
    _, _, trailer = await small_inventory()
    await _book(trailer, START, 2, BookingState.CONFIRMED, "A1")
    with pytest.raises(IntegrityError):
        await _book(trailer, START + timedelta(hours=1), 2, BookingState.AWAITING_PAYMENT, "A2")
    assert await Booking.filter(asset=trailer).count() == 1


async def test_back_to_back_rentals_overlap_by_their_turnaround_and_are_refused(
    database: str,
) -> None:
    _, _, trailer = await small_inventory()  # Harbor's buffers: 15 minutes each side
    first = await _book(trailer, START, 2, BookingState.CONFIRMED, "D1")
    with pytest.raises(IntegrityError):
        await _book(trailer, START + timedelta(hours=2), 2, BookingState.AWAITING_PAYMENT, "D2")
    assert await Booking.filter(asset=trailer).count() == 1
    # Nor may a booking's range be moved onto another's (an extension into the next turnaround).
    await _book(trailer, START + timedelta(hours=2, minutes=30), 2, BookingState.CONFIRMED, "D3")
    with pytest.raises(IntegrityError):
        await Booking.filter(id=first.id).update(
            blocked_until=first.blocked_until + timedelta(minutes=1)
        )
    await first.refresh_from_db()
    assert first.blocked_until == START + timedelta(hours=2, minutes=15)


async def test_back_to_back_turnarounds_and_released_bookings_are_allowed(database: str) -> None:
    _, _, trailer = await small_inventory()
    await _book(trailer, START, 2, BookingState.ACTIVE, "B1")  # takes 9:45-12:15
    await _book(trailer, START + timedelta(hours=2, minutes=30), 2, BookingState.CONFIRMED, "B2")
    cancelled = await _book(trailer, START + timedelta(hours=1), 2, BookingState.CANCELLED, "B3")
    assert await Booking.filter(asset=trailer).count() == 3
    cancelled.state = BookingState.AWAITING_ID
    with pytest.raises(IntegrityError):
        await cancelled.save()
    await cancelled.refresh_from_db()
    assert cancelled.state == BookingState.CANCELLED


async def test_a_booking_takes_at_least_its_rental(database: str) -> None:
    _, _, trailer = await small_inventory()
    renter = await a_renter()
    times = await rental_times(trailer.id, START, START + timedelta(hours=2))
    for wrong in (
        {"blocked_from": START + timedelta(minutes=5)},
        {"blocked_until": START + timedelta(hours=1)},
    ):
        with pytest.raises(IntegrityError):
            await Booking.create(
                reference=f"E{len(wrong)}{next(iter(wrong))[8]}",
                renter=renter,
                asset=trailer,
                **{**times, **wrong},
                state=BookingState.CONFIRMED,
                currency="USD",
                price_cents=1000,
            )
    assert not await Booking.exists()


async def test_a_booking_must_end_after_it_starts(database: str) -> None:
    _, _, trailer = await small_inventory()
    with pytest.raises(IntegrityError):
        await _book(trailer, START, 0, BookingState.DRAFT, "C1")


async def test_a_provider_event_id_is_stored_once(database: str) -> None:
    at = datetime(2026, 7, 1, tzinfo=UTC)
    await ProcessedWebhook.create(provider="stripe", event_id="evt_1", received_at=at)
    with pytest.raises(IntegrityError):
        await ProcessedWebhook.create(provider="stripe", event_id="evt_1", received_at=at)
    await ProcessedWebhook.create(provider="twilio", event_id="evt_1", received_at=at)


async def test_an_open_sqlite_database_and_its_wal_files_are_private(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/keyturn.sqlite3"
    previous = os.umask(0o022)
    try:
        await db.migrate(url)
        await db.open_database(url)
        await ProcessedWebhook.create(provider="t", event_id="e", received_at=START)
        modes = {
            name: stat.S_IMODE(os.stat(tmp_path / name).st_mode) for name in os.listdir(tmp_path)
        }
    finally:
        await db.close_database()
        os.umask(previous)
    assert modes == {
        "keyturn.sqlite3": 0o600,
        "keyturn.sqlite3-shm": 0o600,
        "keyturn.sqlite3-wal": 0o600,
    }
