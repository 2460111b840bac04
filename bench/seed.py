"""Years of a rental business, written in bulk into a database Keyturn's migrations made.

The inventory (locations, items, simulated locks, staff) is written as a TOML file and applied
with ``keyturn inventory apply``, like an operator would; everything else goes in with bulk SQL:
``COPY`` on PostgreSQL (asyncpg's ``copy_records_to_table``), ``executemany`` in one big
transaction per table on SQLite. Every row is built from its index, so a run is reproducible.

The shape of the data:

- each item has one booking a day, four hours long, for ``bookings / items`` days ending a few
  weeks ahead: past ones completed (most), cancelled or expired; the one under way now is
  active; future ones confirmed (most), awaiting payment, awaiting ID, draft, cancelled or
  expired. Stored ranges are the rental widened by the location's buffers, so no two
  slot-holding bookings of an item overlap (the database checks it as they go in);
- every renter has one SMS conversation whose messages spread over three years; bodies older
  than the message retention are blank (earlier purges did it) except a backlog of
  ``expired / 2`` that today's purge must blank;
- audit events about bookings, ``expired / 2`` of them older than the audit retention;
- the most recent bookings' access codes, on the item's lock and on its location's gate: removed
  when over, set while the booking runs or starts within a day (those held by the simulated
  locks too, but for the locks listed in ``wiped``, which lost their codes), pending later, and
  offline codes left working on some cancelled bookings;
- finished timers and outbox effects of the last days, kept for investigation.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from storage.kinds import EffectKind, TimerKind
from storage.sealing import Sealer

#: Bookings an item has per day; each lasts this long, starting at a time that differs by item.
RENTAL = timedelta(hours=4)
BUFFER = timedelta(minutes=15)
#: Days ahead the seeded bookings reach (at most); a renter's new booking goes past them.
FUTURE_DAYS = 30
#: Codes are set on the locks this long before their window (KEYTURN_CODE_LEAD_MINUTES).
CODE_LEAD = timedelta(days=1)
FINISHED_WORK_DAYS = 6
CHUNK = 50_000
REFERENCE_ALPHABET = "ACDEFGHJKLMNPQRTUVWXY34679"
FIRST_NAMES = [
    "Ana",
    "Ben",
    "Carla",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pavel",
    "Quinn",
    "Rosa",
    "Sami",
    "Tess",
    "Umar",
    "Vera",
    "Wen",
    "Xavi",
    "Yara",
    "Zoe",
    "Amir",
    "Bea",
    "Cyril",
    "Dana",
    "Emil",
    "Fatima",
    "Gus",
    "Hana",
    "Ivo",
    "Jade",
    "Kofi",
    "Lena",
    "Mats",
    "Nia",
]
LAST_NAMES = [
    "Reyes",
    "Weber",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Novak",
    "Silva",
    "Kowalski",
    "Haddad",
    "Brennan",
    "Ivanova",
    "Costa",
    "Fischer",
    "Nguyen",
    "Larsen",
    "Rossi",
    "Schmidt",
    "Dubois",
    "Ortega",
    "Quist",
    "Abara",
    "Bauer",
    "Cho",
    "Duarte",
    "Eriksen",
    "Fontaine",
    "Gallo",
    "Horvat",
    "Ishikawa",
    "Jensen",
    "Kaur",
    "Lopez",
    "Mendes",
    "Nakamura",
    "Olsen",
    "Petrov",
    "Ramos",
    "Sato",
    "Varga",
]
WORDS = [
    "hi",
    "book",
    "yes",
    "no",
    "trailer",
    "tomorrow",
    "thanks",
    "when",
    "is",
    "the",
    "gate",
    "code",
    "open",
    "please",
    "extend",
    "two",
    "hours",
    "help",
    "cancel",
    "bike",
    "storage",
    "bay",
    "my",
    "booking",
    "confirmed",
    "payment",
    "received",
    "your",
    "code",
    "works",
    "until",
]


@dataclass(frozen=True)
class Volumes:
    items: int
    locations: int
    bookings: int
    renters: int
    messages: int
    audit_events: int
    access_codes: int
    timers: int
    outbox: int
    #: Rows today's retention purge has to remove or blank (half audit events, half messages).
    expired: int

    @property
    def days(self) -> int:
        return max(3, self.bookings // self.items)

    @property
    def future_days(self) -> int:
        return max(2, min(FUTURE_DAYS, self.days // 10))


FULL = Volumes(
    items=1000,
    locations=20,
    bookings=1_000_000,
    renters=100_000,
    messages=10_000_000,
    audit_events=1_000_000,
    access_codes=200_000,
    timers=100_000,
    outbox=100_000,
    expired=1_000_000,
)


@dataclass
class Seeded:
    """What the measures pick from: real items, bookings, renters and staff of the data."""

    now: datetime
    asset_codes: list[str]
    references: list[str]
    phones: list[str]
    name_parts: list[str]
    owner_telegram_id: int
    counts: dict[str, int] = field(default_factory=dict)


OWNER_TELEGRAM_ID = 100_000_001


def inventory_toml(volumes: Volumes) -> str:
    """Locations, items (each with its own simulated lock), one shared gate per location, and
    an owner and a location-scoped support member."""
    zones = ("America/New_York", "Europe/Berlin", "America/Los_Angeles", "Europe/London")
    out: list[str] = []
    for loc in range(volumes.locations):
        out += [
            "[[locations]]",
            f'slug = "yard{loc:02d}"',
            f'name = "Yard {loc:02d}"',
            f'address = "{loc + 1} Bench Road"',
            f'timezone = "{zones[loc % len(zones)]}"',
            f"buffer_before_minutes = {BUFFER.seconds // 60}",
            f"buffer_after_minutes = {BUFFER.seconds // 60}",
            "booking_horizon_days = 365",
            "",
            "[[locks]]",
            f'key = "yard{loc:02d}-gate"',
            'provider = "simulated"',
            f'device_id = "sim-yard{loc:02d}-gate"',
            'label = "Main gate"',
            f'location = "yard{loc:02d}"',
            "shared = true",
            "",
        ]
    for item in range(volumes.items):
        loc = item % volumes.locations
        out += [
            "[[assets]]",
            f'code = "{asset_code(item)}"',
            f'label = "Trailer {item}"',
            f'location = "yard{loc:02d}"',
            'currency = "USD"',
            'price_per_hour = "12.50"',
            'price_per_day = "60.00"',
            'deposit = "100.00"',
            "min_duration_minutes = 60",
            "max_duration_minutes = 10080",
            f'locks = ["{lock_key(item)}"]',
            "",
            "[[locks]]",
            f'key = "{lock_key(item)}"',
            'provider = "simulated"',
            f'device_id = "sim-{lock_key(item)}"',
            f'label = "Bay {item}"',
            f'location = "yard{loc:02d}"',
            "",
        ]
    out += [
        "[[staff]]",
        f"telegram_user_id = {OWNER_TELEGRAM_ID}",
        'name = "Ana Owner"',
        'role = "owner"',
        "",
        "[[staff]]",
        f"telegram_user_id = {OWNER_TELEGRAM_ID + 1}",
        'name = "Jonas Support"',
        'role = "support"',
        'locations = ["yard00"]',
        "",
    ]
    return "\n".join(out)


def asset_code(item: int) -> str:
    return f"T{item + 1}"


def lock_key(item: int) -> str:
    return f"bay{item + 1:04d}"


def reference(booking_id: int) -> str:
    """A unique reference per id, scrambled so neighbours do not look alike."""
    number = (booking_id * 48271) % len(REFERENCE_ALPHABET) ** 6
    letters = []
    for _ in range(6):
        number, digit = divmod(number, len(REFERENCE_ALPHABET))
        letters.append(REFERENCE_ALPHABET[digit])
    return "K" + "".join(letters)


def phone(renter_id: int) -> str:
    return f"+1555{renter_id:07d}"


def renter_name(renter_id: int) -> str:
    first = FIRST_NAMES[renter_id % len(FIRST_NAMES)]
    last = LAST_NAMES[(renter_id // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return f"{first} {last}"


# -- the rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    """What ``keyturn inventory apply`` made: ids by item index."""

    asset_ids: list[int]
    lock_ids: list[int]  # the item's own lock, by item index
    gate_ids: list[int]  # by location index
    lock_devices: dict[int, str]


@dataclass
class Table:
    name: str
    columns: tuple[str, ...]
    rows: Callable[[], Iterator[tuple[Any, ...]]]


class Rows:
    """Every seeded table's rows, built lazily from indexes."""

    def __init__(
        self,
        volumes: Volumes,
        inventory: Inventory,
        sealer: Sealer,
        now: datetime,
        *,
        audit_days: int,
        message_days: int,
        wiped: frozenset[int],
    ) -> None:
        self.v = volumes
        self.inv = inventory
        self.sealer = sealer
        self.now = now
        self.audit_days = audit_days
        self.message_days = message_days
        self.wiped = wiped
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        self.first_day = today - timedelta(days=volumes.days - volumes.future_days)
        self.dummy_pin = sealer.seal("000000")
        self.simulated: list[tuple[Any, ...]] = []

    # bookings: id = item * days + day + 1
    def booking_times(self, item: int, day: int) -> tuple[datetime, datetime]:
        start = self.first_day + timedelta(days=day, hours=6 + (item // self.v.locations) % 12)
        return start, start + RENTAL

    def booking_state(self, booking_id: int, start: datetime, end: datetime) -> str:
        roll = random.Random(booking_id).random()  # noqa: S311 (a reproducible mix)
        if end <= self.now:
            return "completed" if roll < 0.85 else "cancelled" if roll < 0.93 else "expired"
        if start <= self.now:
            return "active"
        for limit, state in (
            (0.03, "awaiting_payment"),
            (0.06, "awaiting_id"),
            (0.08, "draft"),
            (0.16, "cancelled"),
            (0.20, "expired"),
        ):
            if roll < limit:
                return state
        return "confirmed"

    def bookings(self) -> Iterator[tuple[Any, ...]]:
        v, now = self.v, self.now
        for item in range(v.items):
            asset_id = self.inv.asset_ids[item]
            for day in range(v.days):
                booking_id = item * v.days + day + 1
                start, end = self.booking_times(item, day)
                state = self.booking_state(booking_id, start, end)
                created = min(start - timedelta(days=3), now)
                yield (
                    booking_id,
                    reference(booking_id),
                    (booking_id * 7919) % v.renters + 1,
                    asset_id,
                    start,
                    end,
                    start - BUFFER,
                    end + BUFFER,
                    state,
                    "USD",
                    5000,
                    10000,
                    now + timedelta(minutes=30) if state == "awaiting_payment" else None,
                    created + timedelta(hours=1) if state == "cancelled" else None,
                    "renter" if state == "cancelled" else "",
                    "",
                    0,
                    created,
                    created,
                )

    def renter_rows(self) -> Iterator[tuple[Any, ...]]:
        span = timedelta(days=3 * 365)
        for renter_id in range(1, self.v.renters + 1):
            created = self.now - span * (1 - renter_id / (self.v.renters + 1))
            language = "de" if renter_id % 5 == 0 else "en"
            verified = created if renter_id % 3 else None
            yield (
                renter_id,
                phone(renter_id),
                renter_name(renter_id),
                language,
                False,
                verified,
                created,
                created,
            )

    def conversations(self) -> Iterator[tuple[Any, ...]]:
        for renter_id in range(1, self.v.renters + 1):
            created = self.now - timedelta(days=3 * 365) * (1 - renter_id / (self.v.renters + 1))
            yield (
                renter_id,
                "sms",
                phone(renter_id),
                renter_id,
                "start",
                "{}",
                "de" if renter_id % 5 == 0 else "en",
                self.now - timedelta(hours=renter_id % 500),
                self.v.messages // self.v.renters,
                created,
                created,
            )

    def messages(self) -> Iterator[tuple[Any, ...]]:
        v = self.v
        span = timedelta(days=3 * 365)
        per = max(1, v.messages // v.renters)
        expired = min(v.expired // 2, v.messages // 2)
        # Messages are spread evenly over the span: the backlog is the slice just past retention.
        backlog = span * (expired / v.messages)
        kept_after = self.now - timedelta(days=self.message_days)
        blank_before = kept_after - backlog
        message_id = 0
        for renter_id in range(1, v.renters + 1):
            jitter = (renter_id * 0.618) % 1
            for k in range(per):
                message_id += 1
                at = self.now - span + span * ((k + jitter) / per)
                inbound = k % 2 == 0
                body = (
                    ""
                    if at < blank_before
                    else " ".join(WORDS[(message_id + j) % len(WORDS)] for j in (0, 7, 13))
                )
                yield (
                    message_id,
                    renter_id,
                    "in" if inbound else "out",
                    body,
                    "[]",
                    False,
                    "[]",
                    f"SM{message_id:032x}",
                    "received" if inbound else "delivered",
                    at,
                )

    def audit_events(self) -> Iterator[tuple[Any, ...]]:
        """Five events a booking (held, confirmed, code set, completed, opened), minutes apart."""
        span = audit_span(self.v, self.audit_days)
        actions = ("booking.held", "booking.confirmed", "code.set", "booking.completed", "open")
        for event_id in range(self.v.audit_events):
            group, step = divmod(event_id, len(actions))
            at, booking_id = audited(self.v, self.now, span, group)
            yield (
                at + timedelta(minutes=step),
                "system" if step else "renter",
                actions[step],
                f"booking:{reference(booking_id)}",
                "{}",
            )

    def access_codes(self) -> Iterator[tuple[Any, ...]]:
        """Two codes (item lock, gate) for each recent booking; fills ``self.simulated``."""
        v = self.v
        days = min(v.days, max(1, v.access_codes // (2 * v.items)))
        code_id = 0
        self.simulated = []
        for day in range(v.days - days, v.days):
            for item in range(v.items):
                booking_id = item * v.days + day + 1
                start, end = self.booking_times(item, day)
                state = self.booking_state(booking_id, start, end)
                if state in ("draft", "awaiting_payment", "awaiting_id", "expired"):
                    continue
                for lock_id in (self.inv.lock_ids[item], self.inv.gate_ids[item % v.locations]):
                    code_id += 1
                    yield self._code(code_id, booking_id, lock_id, state, start, end)

    def _code(
        self,
        code_id: int,
        booking_id: int,
        lock_id: int,
        state: str,
        start: datetime,
        end: datetime,
    ) -> tuple[Any, ...]:
        window = (start - BUFFER, end + BUFFER)
        offline = state == "cancelled" and code_id % 5 == 0 and lock_id in self.inv.lock_ids
        if offline:
            code_state, ref = "set", f"sim-offline-{code_id}"
        elif state in ("completed", "cancelled") or window[1] <= self.now:
            code_state, ref = "removed", f"sim-gone-{code_id}"
        elif window[0] - CODE_LEAD <= self.now:
            code_state, ref = "set", self._on_lock(code_id, lock_id, window)
        else:
            code_state, ref = "pending", None
        pin = self.dummy_pin if code_state != "set" or offline else self._pin(code_id)
        created = min(window[0] - CODE_LEAD, self.now)
        return (
            code_id,
            booking_id,
            lock_id,
            "",
            pin,
            window[0],
            window[1],
            code_state,
            offline,
            ref,
            "",
            created,
            created,
        )

    def _pin(self, code_id: int) -> str:
        return self.sealer.seal(f"{(code_id * 7919) % 900_000 + 100_000:06d}")

    def _on_lock(self, code_id: int, lock_id: int, window: tuple[datetime, datetime]) -> str:
        """A set code is held by its simulated lock, unless that lock lost its codes."""
        if lock_id in self.wiped:
            return f"sim-lost-{code_id}"
        sim_id = len(self.simulated) + 1
        device = self.inv.lock_devices[lock_id]
        created = min(window[0] - CODE_LEAD, self.now)
        self.simulated.append(
            (sim_id, device, "", self._pin(code_id), window[0], window[1], None, created)
        )
        return f"sim-{sim_id}"

    def simulated_codes(self) -> Iterator[tuple[Any, ...]]:
        yield from self.simulated

    def timers(self) -> Iterator[tuple[Any, ...]]:
        kinds = (TimerKind.BOOKING_DELIVER_PIN, TimerKind.ACCESS_PROGRAM, TimerKind.BOOKING_END)
        for timer_id in range(1, self.v.timers + 1):
            at = self.now - timedelta(days=FINISHED_WORK_DAYS) * ((timer_id * 0.618) % 1)
            state = "done" if timer_id % 10 else "cancelled"
            fired = at if state == "done" else None
            yield (str(kinds[timer_id % 3]), None, "{}", at, state, 1, "", at, fired)

    def outbox(self) -> Iterator[tuple[Any, ...]]:
        for effect_id in range(1, self.v.outbox + 1):
            at = self.now - timedelta(days=FINISHED_WORK_DAYS) * ((effect_id * 0.618) % 1)
            yield (
                str(EffectKind.SEND_MESSAGE),
                "{}",
                f"seed:{effect_id}",
                "done",
                False,
                1,
                at,
                "",
                False,
                "",
                at,
                at,
            )

    def tables(self) -> list[Table]:
        return [
            Table(
                "renter",
                (
                    "id",
                    "phone",
                    "name",
                    "language",
                    "opted_out",
                    "verified_at",
                    "created_at",
                    "updated_at",
                ),
                self.renter_rows,
            ),
            Table(
                "conversation",
                (
                    "id",
                    "channel",
                    "address",
                    "renter_id",
                    "state",
                    "data",
                    "language",
                    "last_inbound_at",
                    "version",
                    "created_at",
                    "updated_at",
                ),
                self.conversations,
            ),
            Table(
                "booking",
                (
                    "id",
                    "reference",
                    "renter_id",
                    "asset_id",
                    "start_at",
                    "end_at",
                    "blocked_from",
                    "blocked_until",
                    "state",
                    "currency",
                    "price_cents",
                    "deposit_cents",
                    "hold_expires_at",
                    "cancelled_at",
                    "cancel_reason",
                    "return_timing",
                    "late_fee_cents",
                    "created_at",
                    "updated_at",
                ),
                self.bookings,
            ),
            Table(
                "access_code",
                (
                    "id",
                    "booking_id",
                    "lock_id",
                    "label",
                    "pin_encrypted",
                    "starts_at",
                    "ends_at",
                    "state",
                    "offline",
                    "provider_ref",
                    "last_error",
                    "created_at",
                    "updated_at",
                ),
                self.access_codes,
            ),
            # After access_code, which collects the codes the simulated locks hold.
            Table(
                "simulated_code",
                (
                    "id",
                    "device_id",
                    "name",
                    "pin_encrypted",
                    "starts_at",
                    "ends_at",
                    "removed_at",
                    "created_at",
                ),
                self.simulated_codes,
            ),
            Table(
                "message",
                (
                    "id",
                    "conversation_id",
                    "direction",
                    "body",
                    "media",
                    "sealed",
                    "choices",
                    "provider_id",
                    "status",
                    "created_at",
                ),
                self.messages,
            ),
            Table(
                "audit_event",
                ("at", "actor", "action", "subject", "details"),
                self.audit_events,
            ),
            Table(
                "timer",
                (
                    "kind",
                    "key",
                    "payload",
                    "due_at",
                    "state",
                    "attempts",
                    "claimed_by",
                    "created_at",
                    "fired_at",
                ),
                self.timers,
            ),
            Table(
                "outbox_effect",
                (
                    "kind",
                    "payload",
                    "idempotency_key",
                    "state",
                    "critical",
                    "attempts",
                    "next_attempt_at",
                    "last_error",
                    "alerted",
                    "claimed_by",
                    "created_at",
                    "done_at",
                ),
                self.outbox,
            ),
        ]


# -- writing ----------------------------------------------------------------------------------


def chunks(rows: Iterable[tuple[Any, ...]], size: int = CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def write_postgres(
    dsn: str, tables: Sequence[Table], report: Callable[[str], None]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for table in tables:
            written = 0
            for batch in chunks(table.rows()):
                await conn.copy_records_to_table(table.name, records=batch, columns=table.columns)
                written += len(batch)
            counts[table.name] = written
            if written and "id" in table.columns:
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"  # noqa: S608
                    f' (SELECT max(id) FROM "{table.name}"))'
                )
            report(f"{table.name} {written:,}")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return counts


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(" ", timespec="microseconds")
    if isinstance(value, bool):
        return int(value)
    return value


def write_sqlite(
    path: Path, tables: Sequence[Table], report: Callable[[str], None]
) -> dict[str, int]:
    counts: dict[str, int] = {}
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        for table in tables:
            marks = ", ".join("?" for _ in table.columns)
            statement = f'INSERT INTO "{table.name}" ({", ".join(table.columns)}) VALUES ({marks})'  # noqa: S608
            written = 0
            with conn:
                for batch in chunks(table.rows()):
                    conn.executemany(statement, [tuple(map(_sqlite_value, row)) for row in batch])
                    written += len(batch)
            counts[table.name] = written
            report(f"{table.name} {written:,}")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return counts


def audit_span(volumes: Volumes, audit_days: int) -> timedelta:
    """How far back audit events go: the share past retention is what the purge removes."""
    expired = min(
        volumes.expired - min(volumes.expired // 2, volumes.messages // 2),
        volumes.audit_events * 9 // 10,
    )
    return timedelta(days=audit_days) / (1 - expired / volumes.audit_events)


def audited(volumes: Volumes, now: datetime, span: timedelta, group: int) -> tuple[datetime, int]:
    """When the ``group``-th booking's events happened, and that booking's id."""
    at = now - span * ((group * 0.7548776662) % 1)
    day = max(0, min(volumes.days - 1, volumes.days - volumes.future_days - (now - at).days))
    return at, ((group * 31) % volumes.items) * volumes.days + day + 1


def seeded_picks(volumes: Volumes, audit_days: int) -> tuple[list[str], list[str], list[str]]:
    """References of bookings, phones and name parts the measures look up: bookings of the
    last two months, which have audit events kept and (most) access codes."""
    rng = random.Random(15)  # noqa: S311
    now, span, references = datetime.now(UTC), audit_span(volumes, audit_days), []
    for group in range(volumes.audit_events // 5):
        at, booking_id = audited(volumes, now, span, group)
        if now - at < timedelta(days=60):
            references.append(reference(booking_id))
        if len(references) >= 50:
            break
    phones = [phone(rng.randrange(1, volumes.renters + 1)) for _ in range(50)]
    parts = [name[1:5].lower() for name in LAST_NAMES[:20]]
    return references, phones, parts
