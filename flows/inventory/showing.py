"""What the database holds, for ``keyturn inventory show``."""

from __future__ import annotations

from dataclasses import dataclass

from flows.lead_times import LeadTimes
from storage.models import Asset, AssetLock, Location, Lock, StaffMember
from storage.money import Money


def _describe_lead_times(location: Location, defaults: LeadTimes) -> str:
    code, confirm, pin = defaults.at(location).minutes()

    def shown(minutes: int, own: int | None) -> str:
        return f"{minutes} min" + (" (default)" if own is None else "")

    return (
        f"codes programmed {shown(code, location.code_lead_minutes)} before,"
        f" set by {shown(confirm, location.confirm_before_minutes)} before,"
        f" PIN sent {shown(pin, location.pin_lead_minutes)} before"
    )


async def describe_inventory(lead_times: LeadTimes | None = None) -> list[str]:
    """What the database holds, for ``keyturn inventory show``: what renters and staff will meet.
    ``lead_times`` are the defaults where a location sets none of its own."""
    defaults = lead_times or LeadTimes()
    locations = await Location.all().order_by("slug")
    staff = await StaffMember.all().order_by("telegram_user_id")
    held = await _Held.read()
    lines: list[str] = []
    for location in locations:
        lines += held.location_lines(location, defaults)
    if staff:
        lines.append("staff:")
    for member in staff:
        scope = ", ".join(member.location_scope) or "every location"
        status = "" if member.active else " [inactive]"
        lines.append(
            f"  {member.name} (telegram {member.telegram_user_id}){status}: "
            f"{member.role.value}, {scope}"
        )
    return lines


@dataclass
class _Held:
    """The assets and locks in the database and which asset opens which lock."""

    assets: list[Asset]
    locks: list[Lock]
    mapped: dict[int, list[int]]
    location_of_asset: dict[int, int]
    location_of_lock: dict[int, int]

    @classmethod
    async def read(cls) -> _Held:
        mapped: dict[int, list[int]] = {}
        for asset_id, lock_id in await AssetLock.all().values_list("asset_id", "lock_id"):
            mapped.setdefault(int(asset_id), []).append(int(lock_id))
        return cls(
            assets=await Asset.all().order_by("code"),
            locks=await Lock.all().order_by("key"),
            mapped=mapped,
            location_of_asset=dict(await Asset.all().values_list("id", "location_id")),
            location_of_lock=dict(await Lock.all().values_list("id", "location_id")),
        )

    def location_lines(self, location: Location, defaults: LeadTimes) -> list[str]:
        lock_by_id = {row.id: row for row in self.locks}
        used_locks = {lock_id for ids in self.mapped.values() for lock_id in ids}
        lines = [
            f"location {location.slug}: {location.name}, {location.timezone}, buffers"
            f" {location.buffer_before_minutes} min before,"
            f" {location.buffer_after_minutes} min after"
            + (
                f", bookings up to {location.booking_horizon_days} days ahead"
                if location.booking_horizon_days is not None
                else ""
            )
        ]
        if location.address:
            lines.append(f"  address: {location.address}")
        lines.append(f"  lead times: {_describe_lead_times(location, defaults)}")
        if location.home_geofence_id is not None:
            lines.append(f"  home geofence: traccar geofence {location.home_geofence_id}")
        here = [row for row in self.locks if self.location_of_lock[row.id] == location.id]
        for row in here:
            if row.shared:
                lines.append(f"  shared gate: {_lock_name(row)}")
        for asset in self.assets:
            if self.location_of_asset[asset.id] != location.id:
                continue
            status = "" if asset.active else " [inactive]"
            lines.append(
                f"  asset {asset.code}{status}: {asset.label}, "
                f"{Money(asset.price_per_hour_cents, asset.currency).format('en')}/hour, "
                f"{Money(asset.price_per_day_cents, asset.currency).format('en')}/day, "
                f"deposit {Money(asset.deposit_cents, asset.currency).format('en')}, "
                f"{asset.min_duration_minutes}-{asset.max_duration_minutes} min"
            )
            opens = [lock_by_id[i] for i in self.mapped.get(asset.id, [])]
            names = ", ".join(_lock_name(row) for row in sorted(opens, key=lambda r: r.key))
            lines.append(f"    opens: {names or 'no lock of its own'}")
            lines += _handover_lines(asset)
        for row in here:
            if not row.shared and row.id not in used_locks and row.retired_at is None:
                lines.append(f"  unmapped lock: {_lock_name(row)}, no asset opens it")
            elif row.retired_at is not None and row.id not in used_locks and not row.shared:
                lines.append(f"  retired lock: {_lock_name(row)}")
        return lines


def _handover_lines(asset: Asset) -> list[str]:
    """What the item asks at pickup and return, its late fee and its tracker, when it has any."""
    lines = []
    for when, checklist, photos in (
        ("pickup", asset.pickup_checklist, asset.pickup_photos),
        ("return", asset.return_checklist, asset.return_photos),
    ):
        if checklist or photos:
            asks = [f"photo of {prompt}" for prompt in photos] + list(checklist)
            lines.append(f"    {when}: " + "; ".join(asks))
    if asset.pin_after_checklist:
        lines.append("    its own PIN is sent once the pickup checklist is done")
    if asset.late_fee_per_hour_cents:
        fee = Money(asset.late_fee_per_hour_cents, asset.currency).format("en")
        lines.append(
            f"    late fee: {fee} per started hour after {asset.late_grace_minutes} min' grace"
        )
    if asset.early_return_ends_codes:
        lines.append("    an early return ends its codes")
    if asset.traccar_device_id is not None:
        lines.append(f"    tracker: traccar device {asset.traccar_device_id}")
    return lines


def _lock_name(row: Lock) -> str:
    retired = f", retired {row.retired_at:%Y-%m-%d}" if row.retired_at else ""
    return f"{row.label} ({row.key}, {row.provider}{retired})"
