"""The bookable inventory as the renter dialog reads it: locations and items with their prices,
kept in memory for a few seconds.

Most renter messages name a location or an item, and the inventory changes rarely (``keyturn
inventory apply``, often from another process), so each worker reads all of it at once and reads
it again when it is older than ``ttl``. A change reaches every worker within ``ttl`` (5 seconds).
Only what a renter is shown and quoted comes from here; confirming a booking and planning its
codes read the database in their own transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from storage.models import Asset, Location

#: How long a worker keeps the inventory it read before reading it again.
INVENTORY_TTL = 5.0


@dataclass(frozen=True)
class _Snapshot:
    read_at: float
    #: Locations with at least one active item, by name.
    open_locations: tuple[Location, ...]
    locations: dict[str, Location]  # by slug
    #: Every item, active or not, with its location loaded.
    by_code: dict[str, Asset]
    by_id: dict[int, Asset]
    #: Active items per location id, by code.
    active_at: dict[int, tuple[Asset, ...]]


class InventoryCache:
    """One per process (the composition root makes it). The models it returns are shared by
    every turn: read them, never change or save them."""

    def __init__(
        self, ttl: float = INVENTORY_TTL, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.monotonic = monotonic
        self._snapshot: _Snapshot | None = None

    def forget(self) -> None:
        """Read the inventory again on the next question (after this process changed it)."""
        self._snapshot = None

    async def open_locations(self) -> tuple[Location, ...]:
        return (await self._current()).open_locations

    async def location(self, slug: str) -> Location | None:
        return (await self._current()).locations.get(slug)

    async def active_assets(self, location: Location) -> tuple[Asset, ...]:
        return (await self._current()).active_at.get(location.id, ())

    async def asset(self, code: str) -> Asset | None:
        """An active item by its code, its location loaded."""
        asset = (await self._current()).by_code.get(code)
        return asset if asset is not None and asset.active else None

    async def asset_by_id(self, asset_id: int) -> Asset:
        """Any item, active or not (a booking's), its location loaded."""
        snapshot = await self._current()
        asset = snapshot.by_id.get(asset_id)
        if asset is None:  # added since the last read
            self.forget()
            asset = (await self._current()).by_id[asset_id]
        return asset

    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        now = self.monotonic()
        if snapshot is None or now - snapshot.read_at >= self.ttl:
            snapshot = self._snapshot = await _read(now)
        return snapshot


async def _read(now: float) -> _Snapshot:
    locations = {location.id: location for location in await Location.all().order_by("name")}
    assets = await Asset.all().order_by("code")
    active_at: dict[int, list[Asset]] = {}
    for asset in assets:
        asset.location = locations[asset.location_id]
        if asset.active:
            active_at.setdefault(asset.location_id, []).append(asset)
    return _Snapshot(
        read_at=now,
        open_locations=tuple(loc for loc in locations.values() if loc.id in active_at),
        locations={location.slug: location for location in locations.values()},
        by_code={asset.code: asset for asset in assets},
        by_id={asset.id: asset for asset in assets},
        active_at={key: tuple(value) for key, value in active_at.items()},
    )
