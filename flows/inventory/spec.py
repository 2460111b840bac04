"""What an inventory file describes, and the problems that refuse one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.models import StaffRole

# --- What a file describes -------------------------------------------------------------------


@dataclass(frozen=True)
class LocationSpec:
    slug: str
    name: str
    address: str
    timezone: str
    buffer_before_minutes: int
    buffer_after_minutes: int
    #: None means "use KEYTURN_BOOKING_HORIZON_DAYS".
    booking_horizon_days: int | None = None
    #: None means "use KEYTURN_CODE_LEAD_MINUTES" (and likewise for the two below).
    code_lead_minutes: int | None = None
    confirm_before_minutes: int | None = None
    pin_lead_minutes: int | None = None
    #: The Traccar geofence of the location's yard (None: no GPS confirmation of returns).
    home_geofence_id: int | None = None


@dataclass(frozen=True)
class HandoverSpec:
    """What an item asks of the renter at pickup and at return: yes/no questions and the photos
    required, each by what it shows; an early or late return's rules."""

    pickup_checklist: tuple[str, ...] = ()
    return_checklist: tuple[str, ...] = ()
    pickup_photos: tuple[str, ...] = ()
    return_photos: tuple[str, ...] = ()
    #: The item's own PIN only once the pickup checklist and photos are done.
    pin_after_checklist: bool = False
    late_fee_per_hour_cents: int = 0
    late_grace_minutes: int = 15
    early_return_ends_codes: bool = False


@dataclass(frozen=True)
class AssetSpec:
    """An asset as the file describes it. Amounts are in the currency's minor unit (cents for
    USD, yen for JPY, fils for KWD: ``storage.money.Money``)."""

    code: str
    label: str
    location: str
    currency: str
    price_per_hour_cents: int
    price_per_day_cents: int
    deposit_cents: int
    min_duration_minutes: int
    max_duration_minutes: int
    #: None means "use the location's buffer".
    buffer_before_minutes: int | None
    buffer_after_minutes: int | None
    #: Keys of the locks this asset opens, besides the shared gates of its location.
    locks: tuple[str, ...]
    handover: HandoverSpec = HandoverSpec()
    #: Traccar's numeric id of the item's tracker (None: no GPS).
    traccar_device_id: int | None = None


@dataclass(frozen=True)
class LockSpec:
    key: str
    provider: str
    device_id: str
    #: The name renters see; the device id never reaches them.
    label: str
    location: str
    timezone: str
    shared: bool


@dataclass(frozen=True)
class StaffSpec:
    telegram_user_id: int
    name: str
    role: StaffRole
    #: Location slugs; empty means every location.
    locations: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    locations: tuple[LocationSpec, ...]
    assets: tuple[AssetSpec, ...]
    locks: tuple[LockSpec, ...]
    staff: tuple[StaffSpec, ...]
    #: Where it was read from, so errors found while applying can name the file too.
    path: str = "inventory.toml"


# --- Errors ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryProblem:
    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


class InventoryError(Exception):
    """A refused inventory. Carries every problem found, so one edit can fix them all.

    ``path``, ``line`` and ``reason`` are those of the first problem; ``errors`` holds them all.
    """

    def __init__(self, problems: Sequence[InventoryProblem]) -> None:
        if not problems:
            raise ValueError("an InventoryError needs at least one problem")
        self.errors: list[InventoryProblem] = sorted(
            problems, key=lambda p: (p.line is None, p.line or 0)
        )
        first = self.errors[0]
        self.path: str = first.path
        self.line: int | None = first.line
        self.reason: str = first.reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.errors)
