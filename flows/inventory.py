"""The declarative inventory: locations, assets, locks and staff described in one TOML file.

An operator keeps the business in a file under version control and applies it; the database
follows. Parsing is pure, so a bad file is refused with every problem and its line before anything
touches the database. Applying is idempotent, so it can run on every start and after every edit
without noise. Nothing a booking or an access code may still need is ever deleted: assets and staff
are deactivated, locks are retired (or kept while in use), and locations absent from the file stay.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from flows.lead_times import LEAD_MINUTES_MAX, LeadTimes, lead_time_problems
from locks import PROVIDER_NAMES
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
from storage.money import Money, MoneyError, exponent_of

# Slugs and keys stay short enough that "location:<slug>" fits an audit subject (64 characters).
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SLUG_MAX = 48
_ASSET_CODE = re.compile(r"^[A-Z0-9]{1,16}$")
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_TEXT_MAX = 200
_ADDRESS_MAX = 500

#: Access-code states in which the code is, or may yet be, on the lock.
_LIVE_CODE_STATES = (
    AccessCodeState.PENDING,
    AccessCodeState.PROGRAMMING,
    AccessCodeState.SET,
    AccessCodeState.REMOVING,
)

_SECTIONS = ("locations", "assets", "locks", "staff")
_LOCATION_KEYS = (
    "slug",
    "name",
    "address",
    "timezone",
    "buffer_before_minutes",
    "buffer_after_minutes",
    "booking_horizon_days",
    "code_lead_minutes",
    "confirm_before_minutes",
    "pin_lead_minutes",
)
_ASSET_KEYS = (
    "code",
    "label",
    "location",
    "currency",
    "price_per_hour",
    "price_per_day",
    "deposit",
    "min_duration_minutes",
    "max_duration_minutes",
    "buffer_before_minutes",
    "buffer_after_minutes",
    "locks",
)
_LOCK_KEYS = ("key", "provider", "device_id", "label", "location", "timezone", "shared")
_STAFF_KEYS = ("telegram_user_id", "name", "role", "locations")


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


# --- Parsing ---------------------------------------------------------------------------------


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
    problems = _Problems(path, _Lines(text))
    try:
        document = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as err:
        line, reason = _syntax_problem(err, text)
        raise InventoryError([InventoryProblem(path, line, reason)]) from err
    inventory = _Parser(problems, document, lead_times or LeadTimes()).parse()
    if problems.items:
        raise InventoryError(problems.items)
    return inventory


def _syntax_problem(err: tomllib.TOMLDecodeError, text: str) -> tuple[int | None, str]:
    """Line and reason of a TOML syntax error (Python < 3.14 only puts them in the message)."""
    message = str(err)
    line: int | None = getattr(err, "lineno", None)
    column: int | None = getattr(err, "colno", None)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if found:
        message = message[: found.start()]
        line, column = line or int(found.group(1)), column or int(found.group(2))
    elif message.endswith("(at end of document)"):
        message = message.removesuffix("(at end of document)").rstrip()
        line = line or max(1, len(text.splitlines()))
    message = getattr(err, "msg", message)
    where = f" at column {column}" if column else ""
    return line, f"not valid TOML: {message}{where}"


class _Lines:
    """Where each block and key sits in the raw text: tomllib keeps no positions after parsing."""

    _ARRAY_HEADER = re.compile(r"^\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
    _TABLE_HEADER = re.compile(r"^\[\s*([^\[\]]+?)\s*\]")
    _KEY = re.compile(r"""^("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]""")

    def __init__(self, text: str) -> None:
        self._blocks: dict[str, list[int]] = {}
        self._keys: dict[tuple[str, int], dict[str, int]] = {}
        self._top: dict[str, int] = {}
        current: tuple[str, int] | None = None
        open_quote: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if open_quote is not None:
                if line.count(open_quote) % 2 == 1:
                    open_quote = None
                continue
            if header := self._ARRAY_HEADER.match(line):
                starts = self._blocks.setdefault(header.group(1), [])
                current = (header.group(1), len(starts))
                starts.append(number)
                self._top.setdefault(header.group(1), number)
            elif table := self._TABLE_HEADER.match(line):
                self._top.setdefault(table.group(1).split(".")[0].strip("\"' "), number)
                current = ("", -1)
            elif key := self._KEY.match(line):
                name = key.group(1).strip("\"'")
                if current is None:
                    self._top.setdefault(name, number)
                else:
                    self._keys.setdefault(current, {}).setdefault(name, number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    open_quote = quote
                    break

    def top(self, key: str) -> int | None:
        return self._top.get(key)

    def block(self, section: str, index: int) -> int | None:
        starts = self._blocks.get(section, [])
        return starts[index] if index < len(starts) else self._top.get(section)

    def key(self, section: str, index: int, key: str) -> int | None:
        found = self._keys.get((section, index), {}).get(key)
        return found if found is not None else self.block(section, index)


class _Problems:
    def __init__(self, path: str, lines: _Lines) -> None:
        self.path = path
        self.lines = lines
        self.items: list[InventoryProblem] = []

    def add(self, line: int | None, reason: str) -> None:
        self.items.append(InventoryProblem(self.path, line, reason))


def _show(value: object) -> str:
    """A value as the operator wrote it in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StaffRole):
        return value.value
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@cache
def _known_timezones() -> frozenset[str]:
    # "localtime" would mean whatever the server is set to: never what an operator means.
    return frozenset(available_timezones() - {"localtime", "Factory"})


class _Block:
    """One ``[[section]]`` table: typed reads that record a problem instead of raising."""

    def __init__(
        self, problems: _Problems, section: str, index: int, data: Mapping[str, Any], noun: str
    ) -> None:
        self.problems = problems
        self.section = section
        self.index = index
        self.data = data
        self.subject = f"{noun} #{index + 1}"

    def line(self, key: str | None = None) -> int | None:
        if key is None:
            return self.problems.lines.block(self.section, self.index)
        return self.problems.lines.key(self.section, self.index, key)

    def fail(self, reason: str, key: str | None = None) -> None:
        self.problems.add(self.line(key), f"{self.subject}: {reason}")

    def refuse_unknown_keys(self, allowed: Sequence[str]) -> None:
        for key in self.data:
            if key not in allowed:
                self.fail(f"unknown key {key!r}{_suggest(key, allowed)}", key)

    def text(self, key: str, *, required: bool = True, max_length: int = _TEXT_MAX) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(f"missing required key {key!r}")
            return ""
        if not isinstance(value, str):
            self.fail(f"{key} must be text in quotes, got {_show(value)}", key)
            return ""
        value = value.strip()
        if required and not value:
            self.fail(f"{key} must not be empty", key)
        elif len(value) > max_length:
            self.fail(f"{key} is longer than {max_length} characters", key)
        return value

    def slug(self, key: str, what: str) -> str:
        value = self.text(key, max_length=_SLUG_MAX)
        if value and not _SLUG.match(value):
            self.fail(
                f"{key} {value!r} must be {what}: lowercase letters, digits and single hyphens", key
            )
        return value

    def integer(self, key: str, *, default: int, minimum: int, maximum: int = _INT32_MAX) -> int:
        found = self.optional_integer(key, minimum=minimum, maximum=maximum)
        return default if found is None else found

    def optional_integer(self, key: str, *, minimum: int, maximum: int = _INT32_MAX) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{key} must be a whole number, got {_show(value)}", key)
            return None
        if value < minimum:
            self.fail(f"{key} must be at least {minimum}, got {value}", key)
        elif value > maximum:
            self.fail(f"{key} is too large: {value}", key)
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{key} must be true or false, got {_show(value)}", key)
            return default
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f'{key} must be a list of names in quotes, like ["a", "b"]', key)
            return ()
        seen: set[str] = set()
        for item in value:
            if item in seen:
                self.fail(f"{key} lists {item!r} twice", key)
            seen.add(item)
        return tuple(value)

    def money(self, key: str, *, currency: str | None, default: Decimal | None = None) -> int:
        """An amount in major units (``"12.50"`` or ``12.50``) as minor units; never a float.

        ``currency`` is None when the file's is not one: the amount is then left unchecked."""
        value = self.data.get(key)
        if value is None:
            if default is None:
                self.fail(f"missing required key {key!r}")
                return 0
            value = default
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            self.fail(f'{key} must be an amount like "12.50", got {_show(value)}', key)
            return 0
        if currency is None:
            return 0
        try:
            return Money.parse(value, currency).minor
        except MoneyError as refused:
            self.fail(f"{key} {refused}", key)
            return 0


class _Parser:
    def __init__(
        self, problems: _Problems, document: Mapping[str, Any], lead_times: LeadTimes
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
            if key not in _SECTIONS:
                self.problems.add(
                    self.problems.lines.top(key),
                    f"unknown section {key!r}{_suggest(key, _SECTIONS)}; "
                    f"expected {', '.join(f'[[{s}]]' for s in _SECTIONS)}",
                )
        for index, data in self._blocks("locations"):
            self._location(_Block(self.problems, "locations", index, data, "location"))
        for index, data in self._blocks("locks"):
            self._lock(_Block(self.problems, "locks", index, data, "lock"))
        for index, data in self._blocks("assets"):
            self._asset(_Block(self.problems, "assets", index, data, "asset"))
        for index, data in self._blocks("staff"):
            self._staff_member(_Block(self.problems, "staff", index, data, "staff member"))
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
                    f"{section} #{index + 1} must be a table of keys, got {_show(data)}",
                )
        return blocks

    def _is_duplicate(self, block: _Block, key: str, ident: object) -> bool:
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
        self, block: _Block, key: str, kind: str, name: str, known: Iterable[str]
    ) -> bool:
        known = list(known)
        if name and name not in known:
            block.fail(f"{kind} {name!r} is not defined{_suggest(name, known)}", key)
            return False
        return bool(name)

    def _timezone(self, block: _Block, key: str, *, required: bool) -> str:
        zone = block.text(key, required=required, max_length=64)
        if zone and zone not in _known_timezones():
            block.fail(
                f"unknown time zone {zone!r}{_suggest(zone, _known_timezones())}; "
                "use an IANA name like 'Europe/Berlin'",
                key,
            )
        return zone

    def _location(self, block: _Block) -> None:
        slug = block.slug("slug", "a location slug")
        if slug:
            block.subject = f"location {slug!r}"
        block.refuse_unknown_keys(_LOCATION_KEYS)
        spec = LocationSpec(
            slug=slug,
            name=block.text("name"),
            address=block.text("address", required=False, max_length=_ADDRESS_MAX),
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
        )
        self._check_lead_times(block, spec)
        if not slug:
            return
        if not self._is_duplicate(block, "slug", slug):
            self.locations[slug] = spec

    def _check_lead_times(self, block: _Block, spec: LocationSpec) -> None:
        """The location's leads, with the defaults for those it leaves out, must agree."""
        code, confirm, pin = self.lead_times.minutes()
        for problem in lead_time_problems(
            code if spec.code_lead_minutes is None else spec.code_lead_minutes,
            confirm if spec.confirm_before_minutes is None else spec.confirm_before_minutes,
            pin if spec.pin_lead_minutes is None else spec.pin_lead_minutes,
        ):
            key = problem.split(" ", 1)[0]
            block.fail(problem, key if key in block.data else "code_lead_minutes")

    def _lock(self, block: _Block) -> None:
        key = block.slug("key", "a lock key")
        if key:
            block.subject = f"lock {key!r}"
        block.refuse_unknown_keys(_LOCK_KEYS)
        provider = block.text("provider", max_length=32)
        if provider and provider not in PROVIDER_NAMES:
            block.fail(
                f"unknown provider {provider!r}{_suggest(provider, PROVIDER_NAMES)}; "
                f"known providers: {', '.join(PROVIDER_NAMES)}",
                "provider",
            )
        device_id = block.text("device_id")
        location = block.text("location", max_length=_SLUG_MAX)
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

    def _asset(self, block: _Block) -> None:
        code = block.text("code", max_length=16).upper()
        if code:
            block.subject = f"asset {code!r}"
            if not _ASSET_CODE.match(code):
                block.fail(f"code {code!r} must be 1 to 16 letters or digits", "code")
        block.refuse_unknown_keys(_ASSET_KEYS)
        location = block.text("location", max_length=_SLUG_MAX)
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

    def _staff_member(self, block: _Block) -> None:
        user_id = block.optional_integer("telegram_user_id", minimum=1, maximum=_INT64_MAX)
        if user_id is None and "telegram_user_id" not in block.data:
            block.fail("missing required key 'telegram_user_id'")
        if user_id is not None:
            block.subject = f"staff member {user_id}"
        block.refuse_unknown_keys(_STAFF_KEYS)
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


# --- Applying --------------------------------------------------------------------------------


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


async def apply_inventory(inventory: Inventory, *, now: datetime) -> InventoryChanges:
    """Make the database match ``inventory`` in one transaction; writes nothing when it matches."""
    async with in_transaction() as conn:
        return await _Sync(conn, inventory, now).run()


_Diff = dict[str, tuple[object, object]]


class _Sync:
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
            parts.append(f"{name} {_show(old)} -> {_show(new)}")
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


# --- Showing ---------------------------------------------------------------------------------


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
    assets = await Asset.all().order_by("code")
    locks = await Lock.all().order_by("key")
    staff = await StaffMember.all().order_by("telegram_user_id")
    mapped: dict[int, list[int]] = {}
    for asset_id, lock_id in await AssetLock.all().values_list("asset_id", "lock_id"):
        mapped.setdefault(int(asset_id), []).append(int(lock_id))
    lock_by_id = {row.id: row for row in locks}
    used_locks = {lock_id for ids in mapped.values() for lock_id in ids}
    location_of_asset = dict(await Asset.all().values_list("id", "location_id"))
    location_of_lock = dict(await Lock.all().values_list("id", "location_id"))

    def lock_name(row: Lock) -> str:
        retired = f", retired {row.retired_at:%Y-%m-%d}" if row.retired_at else ""
        return f"{row.label} ({row.key}, {row.provider}{retired})"

    lines: list[str] = []
    for location in locations:
        lines.append(
            f"location {location.slug}: {location.name}, {location.timezone}, buffers"
            f" {location.buffer_before_minutes} min before,"
            f" {location.buffer_after_minutes} min after"
            + (
                f", bookings up to {location.booking_horizon_days} days ahead"
                if location.booking_horizon_days is not None
                else ""
            )
        )
        if location.address:
            lines.append(f"  address: {location.address}")
        lines.append(f"  lead times: {_describe_lead_times(location, defaults)}")
        here = [row for row in locks if location_of_lock[row.id] == location.id]
        for row in here:
            if row.shared:
                lines.append(f"  shared gate: {lock_name(row)}")
        for asset in assets:
            if location_of_asset[asset.id] != location.id:
                continue
            status = "" if asset.active else " [inactive]"
            lines.append(
                f"  asset {asset.code}{status}: {asset.label}, "
                f"{Money(asset.price_per_hour_cents, asset.currency).format('en')}/hour, "
                f"{Money(asset.price_per_day_cents, asset.currency).format('en')}/day, "
                f"deposit {Money(asset.deposit_cents, asset.currency).format('en')}, "
                f"{asset.min_duration_minutes}-{asset.max_duration_minutes} min"
            )
            opens = [lock_by_id[i] for i in mapped.get(asset.id, [])]
            names = ", ".join(lock_name(row) for row in sorted(opens, key=lambda r: r.key))
            lines.append(f"    opens: {names or 'no lock of its own'}")
        for row in here:
            if not row.shared and row.id not in used_locks and row.retired_at is None:
                lines.append(f"  unmapped lock: {lock_name(row)}, no asset opens it")
            elif row.retired_at is not None and row.id not in used_locks and not row.shared:
                lines.append(f"  retired lock: {lock_name(row)}")
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
