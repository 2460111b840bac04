"""Reading and checking an inventory file: pure, so a bad file is refused with every problem and
its line before anything touches the database."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from flows.inventory.fields import (
    ADDRESS_MAX,
    ASSET_CODE,
    ASSET_KEYS,
    HANDOVER_ITEMS_MAX,
    INT64_MAX,
    LOCATION_KEYS,
    LOCK_KEYS,
    SECTIONS,
    SLUG_MAX,
    STAFF_KEYS,
    Block,
    known_timezones,
    shown,
    suggestion,
)
from flows.inventory.positions import Problems, SourceLines, syntax_problem
from flows.inventory.spec import (
    AssetSpec,
    HandoverSpec,
    Inventory,
    InventoryError,
    InventoryProblem,
    LocationSpec,
    LockSpec,
    StaffSpec,
)
from flows.lead_times import LEAD_MINUTES_MAX, LeadTimes, lead_time_problems
from locks import PROVIDER_NAMES
from storage.models import StaffRole
from storage.money import MoneyError, exponent_of


def load_inventory(path: Path, lead_times: LeadTimes | None = None) -> Inventory:
    """Read and check the inventory file at ``path``; ``lead_times`` are the defaults a
    location's own lead times are checked against."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InventoryError([InventoryProblem(str(path), None, f"cannot read: {err}")]) from err
    return parse_inventory(text, str(path), lead_times)


def parse_inventory(
    text: str, path: str = "inventory.toml", lead_times: LeadTimes | None = None
) -> Inventory:
    """Check an inventory file's text; raises InventoryError listing every problem with its line."""
    problems = Problems(path, SourceLines(text))
    try:
        document = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as err:
        line, reason = syntax_problem(err, text)
        raise InventoryError([InventoryProblem(path, line, reason)]) from err
    inventory = Parser(problems, document, lead_times or LeadTimes()).parse()
    if problems.items:
        raise InventoryError(problems.items)
    return inventory


class Parser:
    def __init__(
        self, problems: Problems, document: Mapping[str, Any], lead_times: LeadTimes
    ) -> None:
        self.problems = problems
        self.document = document
        self.lead_times = lead_times
        self.locations: dict[str, LocationSpec] = {}
        self.locks: dict[str, LockSpec] = {}
        self.assets: dict[str, AssetSpec] = {}
        #: Which item each lock that is not shared belongs to: it opens for that item alone.
        self.lock_items: dict[str, str] = {}
        self.staff: dict[int, StaffSpec] = {}
        self.first_seen: dict[tuple[str, object], tuple[int, int | None]] = {}

    def parse(self) -> Inventory:
        for key in self.document:
            if key not in SECTIONS:
                self.problems.add(
                    self.problems.lines.top(key),
                    f"unknown section {key!r}{suggestion(key, SECTIONS)}; "
                    f"expected {', '.join(f'[[{s}]]' for s in SECTIONS)}",
                )
        for index, data in self._blocks("locations"):
            self._location(Block(self.problems, "locations", index, data, "location"))
        for index, data in self._blocks("locks"):
            self._lock(Block(self.problems, "locks", index, data, "lock"))
        for index, data in self._blocks("assets"):
            self._asset(Block(self.problems, "assets", index, data, "asset"))
        for index, data in self._blocks("staff"):
            self._staff_member(Block(self.problems, "staff", index, data, "staff member"))
        if self.document.get("locations", []) == []:
            # Applying such a file would deactivate every asset: almost surely the wrong file.
            self.problems.add(None, "no [[locations]] defined: an inventory needs at least one")
        return Inventory(
            locations=tuple(self.locations.values()),
            assets=tuple(self.assets.values()),
            locks=tuple(self.locks.values()),
            staff=tuple(self.staff.values()),
            path=self.problems.path,
        )

    def _blocks(self, section: str) -> list[tuple[int, Mapping[str, Any]]]:
        value = self.document.get(section, [])
        if not isinstance(value, list):
            self.problems.add(
                self.problems.lines.top(section),
                f"{section} must be written as [[{section}]] tables",
            )
            return []
        blocks: list[tuple[int, Mapping[str, Any]]] = []
        for index, data in enumerate(value):
            if isinstance(data, dict):
                blocks.append((index, data))
            else:
                self.problems.add(
                    self.problems.lines.block(section, index),
                    f"{section} #{index + 1} must be a table of keys, got {shown(data)}",
                )
        return blocks

    def _is_duplicate(self, block: Block, key: str, ident: object) -> bool:
        """Report a second definition of ``ident`` at its own line, naming the first one's."""
        first_index, first = self.first_seen.setdefault(
            (block.section, ident), (block.index, block.line(key))
        )
        if first_index == block.index:
            return False
        where = "" if first is None else f" (first at line {first})"
        block.fail(f"defined twice{where}", key)
        return True

    def _reference(
        self, block: Block, key: str, kind: str, name: str, known: Iterable[str]
    ) -> bool:
        known = list(known)
        if name and name not in known:
            block.fail(f"{kind} {name!r} is not defined{suggestion(name, known)}", key)
            return False
        return bool(name)

    def _timezone(self, block: Block, key: str, *, required: bool) -> str:
        zone = block.text(key, required=required, max_length=64)
        if zone and zone not in known_timezones():
            block.fail(
                f"unknown time zone {zone!r}{suggestion(zone, known_timezones())}; "
                "use an IANA name like 'Europe/Berlin'",
                key,
            )
        return zone

    def _location(self, block: Block) -> None:
        slug = block.slug("slug", "a location slug")
        if slug:
            block.subject = f"location {slug!r}"
        block.refuse_unknown_keys(LOCATION_KEYS)
        spec = LocationSpec(
            slug=slug,
            name=block.text("name"),
            address=block.text("address", required=False, max_length=ADDRESS_MAX),
            timezone=self._timezone(block, "timezone", required=True),
            buffer_before_minutes=block.integer("buffer_before_minutes", default=15, minimum=0),
            buffer_after_minutes=block.integer("buffer_after_minutes", default=15, minimum=0),
            booking_horizon_days=block.optional_integer(
                "booking_horizon_days", minimum=1, maximum=3650
            ),
            code_lead_minutes=block.optional_integer(
                "code_lead_minutes", minimum=1, maximum=LEAD_MINUTES_MAX
            ),
            confirm_before_minutes=block.optional_integer(
                "confirm_before_minutes", minimum=1, maximum=LEAD_MINUTES_MAX
            ),
            pin_lead_minutes=block.optional_integer(
                "pin_lead_minutes", minimum=1, maximum=LEAD_MINUTES_MAX
            ),
            home_geofence_id=block.optional_integer(
                "home_geofence_id", minimum=1, maximum=INT64_MAX
            ),
        )
        self._check_lead_times(block, spec)
        if not slug:
            return
        if not self._is_duplicate(block, "slug", slug):
            self.locations[slug] = spec

    def _check_lead_times(self, block: Block, spec: LocationSpec) -> None:
        """The location's leads, with the defaults for those it leaves out, must agree."""
        code, confirm, pin = self.lead_times.minutes()
        for problem in lead_time_problems(
            code if spec.code_lead_minutes is None else spec.code_lead_minutes,
            confirm if spec.confirm_before_minutes is None else spec.confirm_before_minutes,
            pin if spec.pin_lead_minutes is None else spec.pin_lead_minutes,
        ):
            key = problem.split(" ", 1)[0]
            block.fail(problem, key if key in block.data else "code_lead_minutes")

    def _lock(self, block: Block) -> None:
        key = block.slug("key", "a lock key")
        if key:
            block.subject = f"lock {key!r}"
        block.refuse_unknown_keys(LOCK_KEYS)
        provider = block.text("provider", max_length=32)
        if provider and provider not in PROVIDER_NAMES:
            block.fail(
                f"unknown provider {provider!r}{suggestion(provider, PROVIDER_NAMES)}; "
                f"known providers: {', '.join(PROVIDER_NAMES)}",
                "provider",
            )
        device_id = block.text("device_id")
        location = block.text("location", max_length=SLUG_MAX)
        self._reference(block, "location", "location", location, self.locations)
        zone = self._timezone(block, "timezone", required=False)
        if not zone and location in self.locations:
            zone = self.locations[location].timezone
        spec = LockSpec(
            key=key,
            provider=provider,
            device_id=device_id,
            label=block.text("label"),
            location=location,
            timezone=zone,
            shared=block.boolean("shared", default=False),
        )
        if provider and device_id:
            for other in self.locks.values():
                if (other.provider, other.device_id) == (provider, device_id):
                    block.fail(
                        f"{provider} device {device_id!r} is already used by lock {other.key!r}",
                        "device_id",
                    )
        if not key:
            return
        if not self._is_duplicate(block, "key", key):
            self.locks[key] = spec

    def _asset(self, block: Block) -> None:
        code = block.text("code", max_length=16).upper()
        if code:
            block.subject = f"asset {code!r}"
            if not ASSET_CODE.match(code):
                block.fail(f"code {code!r} must be 1 to 16 letters or digits", "code")
        block.refuse_unknown_keys(ASSET_KEYS)
        location = block.text("location", max_length=SLUG_MAX)
        self._reference(block, "location", "location", location, self.locations)
        currency = block.text("currency", max_length=16).upper()
        valid_currency: str | None = None
        if currency:
            try:
                exponent_of(currency)
                valid_currency = currency
            except MoneyError:
                block.fail(f"currency {currency!r} is not an ISO 4217 code like 'USD'", "currency")
        lock_keys = block.names("locks")
        self._asset_locks(block, code, location, lock_keys)
        spec = AssetSpec(
            code=code,
            label=block.text("label"),
            location=location,
            currency=currency,
            price_per_hour_cents=block.money("price_per_hour", currency=valid_currency),
            price_per_day_cents=block.money("price_per_day", currency=valid_currency),
            deposit_cents=block.money("deposit", currency=valid_currency, default=Decimal(0)),
            min_duration_minutes=block.integer("min_duration_minutes", default=60, minimum=1),
            max_duration_minutes=block.integer(
                "max_duration_minutes", default=7 * 24 * 60, minimum=1
            ),
            buffer_before_minutes=block.optional_integer("buffer_before_minutes", minimum=0),
            buffer_after_minutes=block.optional_integer("buffer_after_minutes", minimum=0),
            locks=lock_keys,
            handover=self._handover(block, valid_currency),
            traccar_device_id=self._tracker(block),
        )
        if spec.min_duration_minutes > spec.max_duration_minutes:
            block.fail(
                f"min_duration_minutes {spec.min_duration_minutes} is more than "
                f"max_duration_minutes {spec.max_duration_minutes}",
                "min_duration_minutes",
            )
        if not code:
            return
        if not self._is_duplicate(block, "code", code):
            self.assets[code] = spec

    def _handover(self, block: Block, currency: str | None) -> HandoverSpec:
        spec = HandoverSpec(
            pickup_checklist=block.texts("pickup_checklist", at_most=HANDOVER_ITEMS_MAX),
            return_checklist=block.texts("return_checklist", at_most=HANDOVER_ITEMS_MAX),
            pickup_photos=block.texts("pickup_photos", at_most=HANDOVER_ITEMS_MAX),
            return_photos=block.texts("return_photos", at_most=HANDOVER_ITEMS_MAX),
            pin_after_checklist=block.boolean("pin_after_checklist", default=False),
            late_fee_per_hour_cents=block.money(
                "late_fee_per_hour", currency=currency, default=Decimal(0)
            ),
            late_grace_minutes=block.integer(
                "late_grace_minutes", default=15, minimum=0, maximum=24 * 60
            ),
            early_return_ends_codes=block.boolean("early_return_ends_codes", default=False),
        )
        if spec.pin_after_checklist and not (spec.pickup_checklist or spec.pickup_photos):
            # The PIN waits for a checklist that would never be asked: it would never come.
            block.fail(
                "pin_after_checklist needs a pickup_checklist or pickup_photos to wait for",
                "pin_after_checklist",
            )
        return spec

    def _tracker(self, block: Block) -> int | None:
        device = block.optional_integer("traccar_device_id", minimum=1, maximum=INT64_MAX)
        if device is not None:
            for other in self.assets.values():
                if other.traccar_device_id == device:
                    block.fail(
                        f"traccar device {device} is already the tracker of asset {other.code!r}",
                        "traccar_device_id",
                    )
        return device

    def _asset_locks(
        self, block: Block, code: str, location: str, lock_keys: tuple[str, ...]
    ) -> None:
        """The asset's own locks: known, at its location, and opening no other item."""
        for lock_key in lock_keys:
            if not self._reference(block, "locks", "lock", lock_key, self.locks):
                continue
            lock = self.locks[lock_key]
            if lock.shared:
                block.fail(
                    f"lock {lock_key!r} is a shared gate that every booking at "
                    f"{lock.location!r} opens already; leave it out of locks",
                    "locks",
                )
            elif {location, lock.location} <= self.locations.keys() and lock.location != location:
                block.fail(
                    f"lock {lock_key!r} is at location {lock.location!r}, "
                    f"not at {location!r} like the asset",
                    "locks",
                )
            elif self.lock_items.setdefault(lock_key, code) != code:
                # Availability is per item: two items on one lock would give two renters
                # codes for it at the same time.
                block.fail(
                    f"lock {lock_key!r} already opens item {self.lock_items[lock_key]!r}; "
                    "a lock that is not shared belongs to one item (make it a shared gate, "
                    "or give each item its own lock)",
                    "locks",
                )

    def _staff_member(self, block: Block) -> None:
        user_id = block.optional_integer("telegram_user_id", minimum=1, maximum=INT64_MAX)
        if user_id is None and "telegram_user_id" not in block.data:
            block.fail("missing required key 'telegram_user_id'")
        if user_id is not None:
            block.subject = f"staff member {user_id}"
        block.refuse_unknown_keys(STAFF_KEYS)
        name = block.text("name")
        role_name = block.text("role", max_length=16)
        role = StaffRole.SUPPORT
        if role_name:
            try:
                role = StaffRole(role_name)
            except ValueError:
                block.fail(
                    f"role {role_name!r} is not one of {', '.join(r.value for r in StaffRole)}",
                    "role",
                )
        scope = block.names("locations")
        for slug in scope:
            self._reference(block, "locations", "location", slug, self.locations)
        if user_id is None:
            return
        if not self._is_duplicate(block, "telegram_user_id", user_id):
            self.staff[user_id] = StaffSpec(user_id, name, role, scope)
