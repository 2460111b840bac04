"""Applying an inventory: the database follows the file in the caller's unit of work, idempotently.

Nothing a booking or an access code may still need is deleted: assets and staff are deactivated,
locks retired (or kept while in use), and locations absent from the file stay."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from flows.inventory.fields import shown
from flows.inventory.spec import (
    HandoverSpec,
    Inventory,
    InventoryError,
    InventoryProblem,
    LockSpec,
)
from storage.lock_rows import hold_for_retirement
from storage.models import (
    SLOT_HOLDING_STATES,
    AccessCode,
    AccessCodeState,
    Asset,
    AssetLock,
    AuditEvent,
    Booking,
    Location,
    Lock,
    StaffMember,
    StaffRole,
)


@dataclass
class InventoryChanges:
    """What applying a file did, one human-readable line per change."""

    changes: list[str] = field(default_factory=list)
    #: Things the file asked to remove that were kept, and why. Not changes.
    kept: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def lines(self) -> list[str]:
        return [*self.changes, *self.kept]


async def apply_inventory(
    conn: BaseDBAsyncClient, inventory: Inventory, *, now: datetime
) -> InventoryChanges:
    """Make the database match ``inventory`` in the caller's unit of work ``conn`` (the runner
    commits it, so a file applies whole or not at all); writes nothing when it matches."""
    return await InventorySync(conn, inventory, now).run()


#: Access-code states in which the code is, or may yet be, on the lock.
_LIVE_CODE_STATES = (
    AccessCodeState.PENDING,
    AccessCodeState.PROGRAMMING,
    AccessCodeState.SET,
    AccessCodeState.REMOVING,
)


_Diff = dict[str, tuple[object, object]]


class InventorySync:
    def __init__(self, conn: BaseDBAsyncClient, inventory: Inventory, now: datetime) -> None:
        self.conn = conn
        self.inventory = inventory
        self.now = now
        self.result = InventoryChanges()
        self.locations: dict[str, Location] = {}
        self.locks: dict[str, Lock] = {}
        self.assets: dict[str, Asset] = {}

    async def run(self) -> InventoryChanges:
        conn = self.conn
        self.locations = {row.slug: row for row in await Location.all(using_db=conn)}
        self.locks = {
            row.key: row for row in await Lock.all(using_db=conn).select_related("location")
        }
        self.assets = {
            row.code: row for row in await Asset.all(using_db=conn).select_related("location")
        }
        mappings: set[tuple[int, int]] = {
            (int(asset_id), int(lock_id))
            for asset_id, lock_id in await AssetLock.all(using_db=conn).values_list(
                "asset_id", "lock_id"
            )
        }
        self._refuse_taken_devices()
        await self._sync_locations()
        await self._sync_locks()
        await self._sync_assets()
        kept = await self._retire_absent_locks(mappings)
        await self._sync_mappings(mappings, kept)
        await self._deactivate_absent_assets()
        await self._sync_staff()
        return self.result

    async def _record(
        self, action: str, subject: str, line: str, details: Mapping[str, object] | None = None
    ) -> None:
        self.result.changes.append(line)
        await AuditEvent.create(
            using_db=self.conn,
            at=self.now,
            actor="inventory",
            action=f"inventory.{action}",
            subject=subject,
            details={"change": line, **(details or {})},
        )

    async def _update(
        self, row: Model, wanted: Mapping[str, object], force: Iterable[str] = ()
    ) -> _Diff:
        """Set the fields that differ and save only those; an unchanged row is not written."""
        diff: _Diff = {}
        for name, value in wanted.items():
            current = getattr(row, name)
            if current != value:
                diff[name] = (current, value)
                setattr(row, name, value)
        fields = set(diff) | set(force)
        if fields:
            await row.save(using_db=self.conn, update_fields=[*sorted(fields), "updated_at"])
        return diff

    def _slug_of(self, location_id: object) -> str:
        for slug, row in self.locations.items():
            if row.id == location_id:
                return slug
        return f"#{location_id}"

    def _describe(self, diff: _Diff) -> tuple[str, dict[str, object]]:
        parts: list[str] = []
        details: dict[str, object] = {}
        for name, (old, new) in diff.items():
            if name == "location_id":
                name, old, new = "location", self._slug_of(old), self._slug_of(new)
            parts.append(f"{name} {shown(old)} -> {shown(new)}")
            details[name] = [_jsonable(old), _jsonable(new)]
        return ", ".join(parts), {"fields": details}

    async def _updated(self, kind: str, subject: str, name: str, diff: _Diff) -> None:
        if diff:
            text, details = self._describe(diff)
            await self._record(
                f"{kind}.updated", subject, f"updated {kind} {name}: {text}", details
            )

    def _refuse_taken_devices(self) -> None:
        """A device still held by a lock the file dropped cannot go to a new key: say so first."""
        wanted = {spec.key for spec in self.inventory.locks}
        problems: list[InventoryProblem] = []
        for spec in self.inventory.locks:
            for row in self.locks.values():
                if row.key in wanted or (row.provider, row.device_id) != (
                    spec.provider,
                    spec.device_id,
                ):
                    continue
                problems.append(
                    InventoryProblem(
                        self.inventory.path,
                        None,
                        f"lock {spec.key!r}: {spec.provider} device {spec.device_id!r} belongs to "
                        f"lock {row.key!r} in the database; use the key {row.key!r} again",
                    )
                )
        if problems:
            raise InventoryError(problems)

    async def _sync_locations(self) -> None:
        for spec in self.inventory.locations:
            wanted: dict[str, object] = {
                "name": spec.name,
                "address": spec.address,
                "timezone": spec.timezone,
                "buffer_before_minutes": spec.buffer_before_minutes,
                "buffer_after_minutes": spec.buffer_after_minutes,
                "booking_horizon_days": spec.booking_horizon_days,
                "code_lead_minutes": spec.code_lead_minutes,
                "confirm_before_minutes": spec.confirm_before_minutes,
                "pin_lead_minutes": spec.pin_lead_minutes,
                "home_geofence_id": spec.home_geofence_id,
            }
            subject = f"location:{spec.slug}"
            row = self.locations.get(spec.slug)
            if row is None:
                self.locations[spec.slug] = await Location.create(
                    using_db=self.conn, slug=spec.slug, **wanted
                )
                await self._record("location.created", subject, f"created location {spec.slug}")
            else:
                await self._updated("location", subject, spec.slug, await self._update(row, wanted))

    def _lock_fields(self, spec: LockSpec) -> dict[str, object]:
        return {
            "provider": spec.provider,
            "device_id": spec.device_id,
            "label": spec.label,
            "timezone": spec.timezone,
            "location_id": self.locations[spec.location].id,
            "shared": spec.shared,
        }

    async def _sync_locks(self) -> None:
        existing = [spec for spec in self.inventory.locks if spec.key in self.locks]
        # A device moving between two keys would collide with itself on the unique
        # (provider, device_id) pair; park the moving rows on placeholders first.
        moving = [
            self.locks[spec.key]
            for spec in existing
            if (self.locks[spec.key].provider, self.locks[spec.key].device_id)
            != (spec.provider, spec.device_id)
        ]
        for row in moving:
            await Lock.filter(id=row.id).using_db(self.conn).update(device_id=f"moving:{row.id}")
        parked = {row.key for row in moving}
        for spec in existing:
            row = self.locks[spec.key]
            subject = f"lock:{spec.key}"
            force = ["provider", "device_id"] if spec.key in parked else []
            restore = row.retired_at is not None
            if restore:
                row.retired_at = None
                force.append("retired_at")
            diff = await self._update(row, self._lock_fields(spec), force)
            if restore:
                await self._record("lock.restored", subject, f"restored lock {spec.key}")
            await self._updated("lock", subject, spec.key, diff)
        for spec in self.inventory.locks:
            if spec.key in self.locks:
                continue
            self.locks[spec.key] = await Lock.create(
                using_db=self.conn, key=spec.key, **self._lock_fields(spec)
            )
            await self._record("lock.created", f"lock:{spec.key}", f"created lock {spec.key}")

    async def _sync_assets(self) -> None:
        for spec in self.inventory.assets:
            wanted: dict[str, object] = {
                "label": spec.label,
                "location_id": self.locations[spec.location].id,
                "currency": spec.currency,
                "price_per_hour_cents": spec.price_per_hour_cents,
                "price_per_day_cents": spec.price_per_day_cents,
                "deposit_cents": spec.deposit_cents,
                "min_duration_minutes": spec.min_duration_minutes,
                "max_duration_minutes": spec.max_duration_minutes,
                "buffer_before_minutes": spec.buffer_before_minutes,
                "buffer_after_minutes": spec.buffer_after_minutes,
                "traccar_device_id": spec.traccar_device_id,
                **handover_fields(spec.handover),
            }
            subject = f"asset:{spec.code}"
            row = self.assets.get(spec.code)
            if row is None:
                self.assets[spec.code] = await Asset.create(
                    using_db=self.conn, code=spec.code, active=True, **wanted
                )
                await self._record("asset.created", subject, f"created asset {spec.code}")
                continue
            reactivate = not row.active
            row.active = True
            diff = await self._update(row, wanted, force=("active",) if reactivate else ())
            if reactivate:
                await self._record("asset.reactivated", subject, f"reactivated asset {spec.code}")
            await self._updated("asset", subject, spec.code, diff)

    async def _retire_absent_locks(self, mappings: set[tuple[int, int]]) -> set[int]:
        """Retire locks the file dropped, unless a booking or a code still needs them."""
        wanted = {spec.key for spec in self.inventory.locks}
        kept: set[int] = set()
        for key, row in self.locks.items():
            if key in wanted or row.retired_at is not None:
                continue
            # Planners using the lock finish first, and new ones wait: the count below is the
            # last word on whether a code needs it.
            await hold_for_retirement(self.conn, row.id)
            asset_ids = {asset_id for asset_id, lock_id in mappings if lock_id == row.id}
            if row.shared:
                at_location = (
                    await Asset.filter(location_id=row.location.id)
                    .using_db(self.conn)
                    .values_list("id")
                )
                asset_ids |= {int(found[0]) for found in at_location}
            bookings = 0
            if asset_ids:
                bookings = await (
                    Booking.filter(
                        asset_id__in=sorted(asset_ids), state__in=list(SLOT_HOLDING_STATES)
                    )
                    .using_db(self.conn)
                    .count()
                )
            codes = await (
                AccessCode.filter(lock_id=row.id, state__in=list(_LIVE_CODE_STATES))
                .using_db(self.conn)
                .count()
            )
            if bookings or codes:
                kept.add(row.id)
                self.result.kept.append(f"kept lock {key}: {_in_use(bookings, codes)}")
                continue
            row.retired_at = self.now
            await row.save(using_db=self.conn, update_fields=["retired_at", "updated_at"])
            await self._record("lock.retired", f"lock:{key}", f"retired lock {key}")
        return kept

    async def _sync_mappings(self, mappings: set[tuple[int, int]], kept: set[int]) -> None:
        """Each asset in the file opens exactly its listed locks (plus kept ones still in use)."""
        key_of = {row.id: key for key, row in self.locks.items()}
        for spec in self.inventory.assets:
            asset = self.assets[spec.code]
            current = {lock_id for asset_id, lock_id in mappings if asset_id == asset.id}
            wanted = {self.locks[key].id for key in spec.locks} | (current & kept)
            subject = f"asset:{spec.code}"
            for lock_id in sorted(current - wanted, key=lambda i: key_of[i]):
                await (
                    AssetLock.filter(asset_id=asset.id, lock_id=lock_id)
                    .using_db(self.conn)
                    .delete()
                )
                await self._record(
                    "mapping.removed",
                    subject,
                    f"unmapped asset {spec.code} from lock {key_of[lock_id]}",
                    {"lock": key_of[lock_id]},
                )
            for key in spec.locks:
                lock = self.locks[key]
                if lock.id in current:
                    continue
                await AssetLock.create(using_db=self.conn, asset_id=asset.id, lock_id=lock.id)
                await self._record(
                    "mapping.added",
                    subject,
                    f"mapped asset {spec.code} to lock {key}",
                    {"lock": key},
                )

    async def _deactivate_absent_assets(self) -> None:
        wanted = {spec.code for spec in self.inventory.assets}
        for code, row in self.assets.items():
            if code in wanted or not row.active:
                continue
            row.active = False
            await row.save(using_db=self.conn, update_fields=["active", "updated_at"])
            await self._record("asset.deactivated", f"asset:{code}", f"deactivated asset {code}")

    async def _sync_staff(self) -> None:
        rows = {row.telegram_user_id: row for row in await StaffMember.all(using_db=self.conn)}
        for spec in self.inventory.staff:
            wanted: dict[str, object] = {
                "name": spec.name,
                "role": spec.role,
                "location_scope": list(spec.locations),
            }
            subject = f"staff:{spec.telegram_user_id}"
            row = rows.get(spec.telegram_user_id)
            if row is None:
                await StaffMember.create(
                    using_db=self.conn,
                    telegram_user_id=spec.telegram_user_id,
                    active=True,
                    **wanted,
                )
                await self._record(
                    "staff.created", subject, f"created staff {spec.telegram_user_id} ({spec.name})"
                )
                continue
            reactivate = not row.active
            row.active = True
            diff = await self._update(row, wanted, force=("active",) if reactivate else ())
            if reactivate:
                await self._record(
                    "staff.reactivated", subject, f"reactivated staff {spec.telegram_user_id}"
                )
            await self._updated("staff", subject, str(spec.telegram_user_id), diff)
        wanted_ids = {spec.telegram_user_id for spec in self.inventory.staff}
        for user_id, row in rows.items():
            if user_id in wanted_ids or not row.active:
                continue
            row.active = False
            await row.save(using_db=self.conn, update_fields=["active", "updated_at"])
            await self._record(
                "staff.deactivated", f"staff:{user_id}", f"deactivated staff {user_id} ({row.name})"
            )


def _in_use(bookings: int, codes: int) -> str:
    parts: list[str] = []
    if bookings:
        parts.append(f"{bookings} active booking{'s' if bookings != 1 else ''}")
    if codes:
        parts.append(f"{codes} access code{'s' if codes != 1 else ''} not yet removed")
    verb = "uses" if len(parts) == 1 and bookings + codes == 1 else "use"
    return f"{' and '.join(parts)} {verb} it"


def _jsonable(value: object) -> object:
    if isinstance(value, StaffRole):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def handover_fields(spec: HandoverSpec) -> dict[str, object]:
    """An item's pickup and return rules as its row stores them."""
    return {
        "pickup_checklist": list(spec.pickup_checklist),
        "return_checklist": list(spec.return_checklist),
        "pickup_photos": list(spec.pickup_photos),
        "return_photos": list(spec.return_photos),
        "pin_after_checklist": spec.pin_after_checklist,
        "late_fee_per_hour_cents": spec.late_fee_per_hour_cents,
        "late_grace_minutes": spec.late_grace_minutes,
        "early_return_ends_codes": spec.early_return_ends_codes,
    }
