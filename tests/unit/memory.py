"""In-memory stand-ins for what the journey's pure steps read: the inventory and the bookings in
the way of a slot, answering exactly as the database does (``flows.bookings._taking``: a
booking holding its slot whose stored range reaches into the asked one, or a cancelled one
whose offline code could not be taken off the lock, by its range or, on an unshared lock, by
the code's own window; ranges are half-open, so touching ones do not clash).

Items, locations and bookings are small frozen dataclasses with the fields the steps read, so
no Tortoise model (and no database) is needed; they are handed to the steps where a model is
expected (``as_asset``, ``as_booking``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from flows.bookings import alternatives_reach, blocked_range, free_slots
from flows.inventory_cache import InventoryCache
from locks.windows import AccessWindow
from storage.models import SLOT_HOLDING_STATES, Asset, Booking, BookingState


@dataclass(frozen=True)
class LocationRow:
    id: int = 1
    slug: str = "harbour"
    name: str = "Harbour"
    timezone: str = "America/New_York"
    buffer_before_minutes: int = 15
    buffer_after_minutes: int = 15
    booking_horizon_days: int | None = None


@dataclass(frozen=True)
class AssetRow:
    """An item as the quote reads it (``flows.bookings.Priced``), with its location."""

    id: int = 1
    code: str = "K1"
    label: str = "Kayak"
    location: LocationRow = field(default_factory=LocationRow)
    currency: str = "USD"
    price_per_hour_cents: int = 1000
    price_per_day_cents: int = 5000
    deposit_cents: int = 2000
    min_duration_minutes: int = 60
    max_duration_minutes: int = 7 * 24 * 60
    buffer_before_minutes: int | None = None
    buffer_after_minutes: int | None = None
    active: bool = True

    @property
    def location_id(self) -> int:
        return self.location.id


@dataclass(frozen=True)
class CodeRow:
    """An access code of a booking, as availability reads it."""

    starts_at: datetime
    ends_at: datetime
    offline: bool = True
    provider_ref: str | None = "lock-ref"
    shared: bool = False  # its lock's


@dataclass(frozen=True)
class BookingRow:
    id: int
    asset_id: int
    renter_id: int
    state: BookingState
    start_at: datetime
    end_at: datetime
    blocked_from: datetime
    blocked_until: datetime
    reference: str = "KAAAAAA"
    currency: str = "USD"
    price_cents: int = 0
    deposit_cents: int = 0
    return_checklist_at: datetime | None = None
    codes: tuple[CodeRow, ...] = ()


def as_asset(row: AssetRow) -> Asset:
    """The row where the steps expect an ``Asset`` (they only read its fields)."""
    return cast(Asset, row)


def as_booking(row: BookingRow) -> Booking:
    return cast(Booking, row)


def _reaches(a_from: datetime, a_until: datetime, b_from: datetime, b_until: datetime) -> bool:
    return a_from < b_until and a_until > b_from


def _lapsing(code: CodeRow) -> bool:
    return code.offline and code.provider_ref is not None


class MemoryBookings:
    """``flows.booking.reads.BookingReads`` over a list of bookings."""

    def __init__(
        self, bookings: list[BookingRow] | None = None, inactive: frozenset[int] = frozenset()
    ) -> None:
        self.bookings = list(bookings or [])
        #: Items taken out of service since the inventory was read.
        self.inactive = inactive

    def _taking(self, asset_id: int, starts: datetime, ends: datetime) -> list[BookingRow]:
        taking = []
        for b in self.bookings:
            if b.asset_id != asset_id:
                continue
            reaches = _reaches(b.blocked_from, b.blocked_until, starts, ends)
            holding = b.state in SLOT_HOLDING_STATES and reaches
            lapsing = b.state == BookingState.CANCELLED and any(
                _lapsing(c)
                and (reaches or (not c.shared and _reaches(c.starts_at, c.ends_at, starts, ends)))
                for c in b.codes
            )
            if holding or lapsing:
                taking.append(b)
        return taking

    async def is_free(
        self, asset_id: int, blocked: AccessWindow, *, ignore: int | None = None
    ) -> bool:
        clashes = self._taking(asset_id, blocked.starts_at, blocked.ends_at)
        return not [b for b in clashes if b.id != ignore]

    async def alternatives(
        self, asset: Asset, start: datetime, end: datetime, *, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        wanted = blocked_range(asset, start, end)
        around = alternatives_reach(wanted)
        held = [(b.blocked_from, b.blocked_until) for b in self._taking(asset.id, *around)]
        held += [
            (c.starts_at, c.ends_at)
            for b in self.bookings
            if b.asset_id == asset.id and b.state == BookingState.CANCELLED
            for c in b.codes
            if _lapsing(c) and not c.shared and _reaches(c.starts_at, c.ends_at, *around)
        ]
        return free_slots(held, wanted, start, end, now=now)

    async def unpaid_count(self, renter_id: int) -> int:
        return sum(
            1
            for b in self.bookings
            if b.renter_id == renter_id and b.state == BookingState.AWAITING_PAYMENT
        )

    async def asset_active(self, asset_id: int) -> bool:
        return asset_id not in self.inactive


class MemoryInventory(InventoryCache):
    """The inventory cache over fixed items, never reading the database."""

    def __init__(self, assets: list[AssetRow]) -> None:
        super().__init__()
        self.rows = {row.code: row for row in assets}

    async def asset(self, code: str) -> Asset | None:
        row = self.rows.get(code)
        return as_asset(row) if row is not None and row.active else None

    async def asset_by_id(self, asset_id: int) -> Asset:
        return next(as_asset(row) for row in self.rows.values() if row.id == asset_id)
