"""The keys each ``[[section]]`` may hold and typed reads of one block's values, each recording
a problem (with its line) instead of raising."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from flows.inventory.positions import Problems
from storage.models import StaffRole
from storage.money import Money, MoneyError

# Slugs and keys stay short enough that "location:<slug>" fits an audit subject (64 characters).
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX = 48
ASSET_CODE = re.compile(r"^[A-Z0-9]{1,16}$")
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
TEXT_MAX = 200
ADDRESS_MAX = 500


SECTIONS = ("locations", "assets", "locks", "staff")
LOCATION_KEYS = (
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
    "home_geofence_id",
)
ASSET_KEYS = (
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
    "traccar_device_id",
    "pickup_checklist",
    "return_checklist",
    "pickup_photos",
    "return_photos",
    "pin_after_checklist",
    "late_fee_per_hour",
    "late_grace_minutes",
    "early_return_ends_codes",
)
#: A checklist or photo list longer than this would wear out any renter at a handover.
HANDOVER_ITEMS_MAX = 20
LOCK_KEYS = ("key", "provider", "device_id", "label", "location", "timezone", "shared")
STAFF_KEYS = ("telegram_user_id", "name", "role", "locations")


def shown(value: object) -> str:
    """A value as the operator wrote it in TOML, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StaffRole):
        return value.value
    if isinstance(value, str):
        return repr(value)
    return str(value)


def suggestion(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@cache
def known_timezones() -> frozenset[str]:
    # "localtime" would mean whatever the server is set to: never what an operator means.
    return frozenset(available_timezones() - {"localtime", "Factory"})


class Block:
    """One ``[[section]]`` table: typed reads that record a problem instead of raising."""

    def __init__(
        self, problems: Problems, section: str, index: int, data: Mapping[str, Any], noun: str
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
                self.fail(f"unknown key {key!r}{suggestion(key, allowed)}", key)

    def text(self, key: str, *, required: bool = True, max_length: int = TEXT_MAX) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(f"missing required key {key!r}")
            return ""
        if not isinstance(value, str):
            self.fail(f"{key} must be text in quotes, got {shown(value)}", key)
            return ""
        value = value.strip()
        if required and not value:
            self.fail(f"{key} must not be empty", key)
        elif len(value) > max_length:
            self.fail(f"{key} is longer than {max_length} characters", key)
        return value

    def slug(self, key: str, what: str) -> str:
        value = self.text(key, max_length=SLUG_MAX)
        if value and not SLUG.match(value):
            self.fail(
                f"{key} {value!r} must be {what}: lowercase letters, digits and single hyphens", key
            )
        return value

    def integer(self, key: str, *, default: int, minimum: int, maximum: int = INT32_MAX) -> int:
        found = self.optional_integer(key, minimum=minimum, maximum=maximum)
        return default if found is None else found

    def optional_integer(self, key: str, *, minimum: int, maximum: int = INT32_MAX) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{key} must be a whole number, got {shown(value)}", key)
            return None
        if value < minimum:
            self.fail(f"{key} must be at least {minimum}, got {value}", key)
        elif value > maximum:
            self.fail(f"{key} is too large: {value}", key)
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{key} must be true or false, got {shown(value)}", key)
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

    def texts(self, key: str, *, at_most: int) -> tuple[str, ...]:
        """A list of short texts (checklist questions, photo prompts), each one line."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f'{key} must be a list of texts in quotes, like ["Lights work?"]', key)
            return ()
        items = tuple(item.strip() for item in value)
        if len(items) > at_most:
            self.fail(f"{key} has {len(items)} entries; at most {at_most}", key)
        for item in items:
            if not item:
                self.fail(f"{key} has an empty entry", key)
            elif len(item) > TEXT_MAX or "\n" in item:
                self.fail(f"{key} entries must be one line of at most {TEXT_MAX} characters", key)
        return items

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
            self.fail(f'{key} must be an amount like "12.50", got {shown(value)}', key)
            return 0
        if currency is None:
            return 0
        try:
            return Money.parse(value, currency).minor
        except MoneyError as refused:
            self.fail(f"{key} {refused}", key)
            return 0
