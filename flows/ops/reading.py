"""The read-only commands: /today, /booking, /find, /locks, /audit and /help."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from flows.digits import is_ascii_number
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.ops.answers import COMMANDS, HISTORY, BadArguments, Context, OpsAnswer
from flows.ops.base import DeskBase, contact_of
from storage.models import (
    AccessCode,
    Asset,
    AuditEvent,
    Booking,
    BookingState,
    Location,
    Lock,
    Payment,
    Renter,
    StaffMember,
)
from storage.money import Money
from storage.renter_bookings import latest_bookings
from storage.uow import UnitOfWork


class ReadingCommands(DeskBase):
    async def _today(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        """What starts and ends today at each location in scope (its own day, in its own
        zone), read in one statement for all of them; ``/today <location>`` for one. A busy
        day shows its first entries per location and how many more there are, so the answer
        stays one readable message however large the business."""
        now = self.clock.now()
        locations = [
            location
            for location in await Location.all().order_by("name")
            if self._in_scope(staff, location.slug) and (not args or location.slug == args[0])
        ]
        if args and not locations:
            return OpsAnswer([self.t("ops.not_found", what=args[0])])
        days = {location.id: _local_day(location.timezone, now) for location in locations}
        entries = await _starting_or_ending(days)
        shown = max(TODAY_MIN_LINES, TODAY_LINES // max(len(locations), 1))
        lines: list[str] = []
        for location in locations:
            zone = ZoneInfo(location.timezone)
            begin, _ = days[location.id]
            mine = sorted(entries.get(location.id, []))
            lines.append(
                self.t("ops.today_header", location=location.name, date=begin.date().isoformat())
            )
            if not mine:
                lines.append(self.t("ops.today_none"))
            for at, _, key, reference, asset, state in mine[:shown]:
                lines.append(
                    self.t(
                        key,
                        time=at.astimezone(zone).strftime("%H:%M"),
                        reference=reference,
                        asset=asset,
                        state=state,
                    )
                )
            if len(mine) > shown:
                lines.append(self.t("ops.today_more", count=len(mine) - shown, slug=location.slug))
        return OpsAnswer(lines or [self.t("ops.today_none")])

    async def _booking(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        asset = await Asset.get(id=booking.asset_id).prefetch_related("location")
        tz = asset.location.timezone
        renter = await Renter.get(id=booking.renter_id)
        codes = await AccessCode.filter(booking_id=booking.id).prefetch_related("lock")
        payments = await Payment.filter(booking_id=booking.id).order_by("id")
        none = self.t("ops.none")
        return OpsAnswer(
            [
                self.t(
                    "ops.booking_line",
                    reference=booking.reference,
                    state=booking.state.value,
                    asset=f"{asset.code} {asset.label}",
                    location=asset.location.name,
                    start=local_time(booking.start_at, tz, OPS_LANGUAGE),
                    end=local_time(booking.end_at, tz, OPS_LANGUAGE),
                ),
                self.t("ops.booking_renter", name=renter.name or "-", contact=contact_of(renter)),
                self.t(
                    "ops.booking_codes",
                    codes=", ".join(self._code_line(c, tz) for c in codes) or none,
                ),
                self.t(
                    "ops.booking_payments",
                    payments=", ".join(
                        f"{p.purpose} {Money(p.amount_cents, p.currency).format(OPS_LANGUAGE)}"
                        f" {p.status}"
                        for p in payments
                    )
                    or none,
                ),
            ]
        )

    async def _find(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        query = args[0].strip()
        digits = "".join(c for c in query if is_ascii_number(c, most_digits=1))
        if len(query) < 2:
            raise BadArguments()
        if len(digits) >= 4 and len(digits) >= len(query.replace(" ", "")) - 2:
            renters = await Renter.filter(phone__contains=digits).limit(10)
        else:
            renters = await Renter.filter(name__icontains=query).limit(10)
        recent = await latest_bookings([renter.id for renter in renters], FOUND_BOOKINGS)
        lines: list[str] = []
        for renter in renters:
            bookings = recent.get(renter.id, [])
            mine = [b for b in bookings if self._in_scope(staff, b[2])]
            if bookings and not mine:
                continue
            lines.append(
                self.t(
                    "ops.find_line",
                    name=renter.name or "-",
                    contact=contact_of(renter),
                    bookings=", ".join(f"{reference} {state}" for reference, state, _ in mine)
                    or self.t("ops.none"),
                )
            )
        return OpsAnswer(lines or [self.t("ops.not_found", what=query)])

    async def _locks(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        """Each lock in scope, those that need a look first (offline, unknown, the lowest
        battery); ``/locks <location>`` for one location. Like /today, a location with many
        locks shows its first and how many more there are. Only the columns shown are read."""
        rows = [
            LockRow(**row)
            for row in await Lock.filter(retired_at__isnull=True).values(
                "key",
                "label",
                "online",
                "battery_level",
                "last_event_at",
                "timezone",
                slug="location__slug",
            )
            if self._in_scope(staff, row["slug"]) and (not args or row["slug"] == args[0])
        ]
        if not rows:
            return OpsAnswer([self.t("ops.not_found", what=args[0] if args else "locks")])
        by_location: dict[str, list[LockRow]] = {}
        for row in sorted(rows, key=_needs_a_look_first):
            by_location.setdefault(row.slug, []).append(row)
        shown = max(TODAY_MIN_LINES, TODAY_LINES // len(by_location))
        lines = []
        for slug in sorted(by_location):
            mine = by_location[slug]
            lines += [self._lock_line(row) for row in mine[:shown]]
            if len(mine) > shown:
                lines.append(self.t("ops.locks_more", count=len(mine) - shown, slug=slug))
        return OpsAnswer(lines)

    def _lock_line(self, lock: LockRow) -> str:
        online = {True: "ops.lock_online", False: "ops.lock_offline_now", None: "ops.unknown"}
        return self.t(
            "ops.locks_line",
            name=lock.key,
            label=lock.label,
            online=self.t(online[lock.online]),
            battery=f"{round(lock.battery_level * 100)}%"
            if lock.battery_level is not None
            else self.t("ops.unknown"),
            last=local_time(lock.last_event_at, lock.timezone, OPS_LANGUAGE)
            if lock.last_event_at
            else self.t("ops.never"),
        )

    async def _audit(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        code_ids = await AccessCode.filter(booking_id=booking.id).values_list("id", flat=True)
        subjects = [f"booking:{booking.reference}", *(f"code:{i}" for i in code_ids)]
        events = await AuditEvent.filter(subject__in=subjects).order_by("-at", "-id").limit(HISTORY)
        lines = [
            self.t(
                "ops.audit_line",
                at=event.at.strftime("%m-%d %H:%M"),
                actor=event.actor,
                action=event.action,
                subject=event.subject,
            )
            for event in reversed(events)
        ]
        return OpsAnswer(lines or [self.t("ops.not_found", what=booking.reference)])

    async def _help(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        lines = [self.t("ops.help_header", name=staff.name, role=staff.role.value)]
        lines += [
            self.t(spec.usage)
            for spec in COMMANDS.values()
            if spec.permission is None or self.may(staff, spec.permission)
        ]
        return OpsAnswer(lines)

    def _code_line(self, code: AccessCode, tz: str) -> str:
        line = f"{code.lock.label} {code.state.value}"
        if code.offline:  # it works until its end, whatever its state says
            until = local_time(code.ends_at, tz, OPS_LANGUAGE)
            line += " " + self.t("ops.code_offline_until", until=until)
        return line


#: How many entries /today shows in all, shared among the locations it covers (at least
#: ``TODAY_MIN_LINES`` each): an answer that fits one Telegram message.
TODAY_LINES = 60
TODAY_MIN_LINES = 3
_SHOWN_STATES = [state for state in BookingState if state is not BookingState.DRAFT]
#: (time, booking id, message key, reference, item code, state) of one /today entry.
TodayEntry = tuple[datetime, int, str, str, str, str]


def _local_day(timezone: str, now: datetime) -> tuple[datetime, datetime]:
    """The day ``now`` falls in at ``timezone``: its start and the next day's."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    begin = datetime(day.year, day.month, day.day, tzinfo=zone)
    return begin, begin + timedelta(days=1)


async def _starting_or_ending(
    days: dict[int, tuple[datetime, datetime]],
) -> dict[int, list[TodayEntry]]:
    """Per location id, the bookings starting or ending in its day: one statement over the
    span of all the days (by ``booking_start`` and ``booking_end``), sorted out here."""
    if not days:
        return {}
    earliest = min(begin for begin, _ in days.values())
    latest = max(end for _, end in days.values())
    rows = await Booking.filter(
        Q(start_at__gte=earliest, start_at__lt=latest) | Q(end_at__gte=earliest, end_at__lt=latest),
        asset__location_id__in=list(days),
        state__in=_SHOWN_STATES,
    ).values("id", "reference", "state", "start_at", "end_at", "asset__code", "asset__location_id")
    found: dict[int, list[TodayEntry]] = {}
    for row in rows:
        begin, end = days[row["asset__location_id"]]
        state = str(row["state"])
        for at, key in ((row["start_at"], "ops.today_start"), (row["end_at"], "ops.today_end")):
            if begin <= at < end:
                entry = (at, row["id"], key, row["reference"], row["asset__code"], state)
                found.setdefault(row["asset__location_id"], []).append(entry)
    return found


#: How many of a renter's latest bookings /find shows.
FOUND_BOOKINGS = 5


@dataclass(frozen=True)
class LockRow:
    """What /locks shows of a lock."""

    key: str
    label: str
    online: bool | None
    battery_level: float | None
    last_event_at: datetime | None
    timezone: str
    slug: str


def _needs_a_look_first(lock: LockRow) -> tuple[int, float, str]:
    """Offline locks first, then those nobody has heard from, then by battery, lowest first."""
    standing = {False: 0, None: 1, True: 2}[lock.online]
    battery = lock.battery_level if lock.battery_level is not None else -1.0
    return (standing, battery, lock.key)
