"""What the quote, YES and extension steps read, behind a small port: the inventory comes from
``InventoryCache`` (already in memory), the bookings in the way of a slot and a renter's unpaid
holds from ``BookingReads``. ``DatabaseBookingReads`` is the one the composition root
wires; the unit tests hand the steps an in-memory one that answers the same questions the same
way (``tests/unit/memory.py``).

These are the plain reads a step makes before it answers; what must hold when the booking is
made (the renter's unpaid holds under a row lock, the guarded UPDATEs) is checked again in the
turn's unit of work."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from flows.bookings import alternatives, is_free, unpaid_bookings
from locks.windows import AccessWindow
from storage.models import Asset


class BookingReads(Protocol):
    """Whether a slot is free, the nearest free ones, and a renter's unpaid holds."""

    async def is_free(
        self, asset_id: int, blocked: AccessWindow, *, ignore: int | None = None
    ) -> bool:
        """Whether ``blocked`` reaches no other booking's stored range on the item (nor a
        lapsing offline code's window); ``ignore`` is the booking being extended."""
        ...

    async def alternatives(
        self, asset: Asset, start: datetime, end: datetime, *, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        """The nearest free slots of the same length (``flows.bookings.free_slots``)."""
        ...

    async def unpaid_count(self, renter_id: int) -> int:
        """How many of the renter's bookings await payment."""
        ...

    async def asset_active(self, asset_id: int) -> bool:
        """Whether the item is in service now (the inventory in memory may be seconds old)."""
        ...


class DatabaseBookingReads:
    """``BookingReads`` from the database, outside any transaction."""

    async def is_free(
        self, asset_id: int, blocked: AccessWindow, *, ignore: int | None = None
    ) -> bool:
        return await is_free(asset_id, blocked, ignore=ignore)

    async def alternatives(
        self, asset: Asset, start: datetime, end: datetime, *, now: datetime
    ) -> list[tuple[datetime, datetime]]:
        return await alternatives(asset, start, end, now=now)

    async def unpaid_count(self, renter_id: int) -> int:
        return await unpaid_bookings(renter_id)

    async def asset_active(self, asset_id: int) -> bool:
        return await Asset.filter(id=asset_id, active=True).exists()
