"""The read-only commands: /today, /booking, /find, /locks, /audit and /help."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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
from storage.uow import UnitOfWork


class ReadingCommands(DeskBase):
    async def _today(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        now = self.clock.now()
        lines: list[str] = []
        for location in await Location.all().order_by("name"):
            if not self._in_scope(staff, location.slug):
                continue
            zone = ZoneInfo(location.timezone)
            day = now.astimezone(zone).date()
            begin = datetime(day.year, day.month, day.day, tzinfo=zone)
            end = begin + timedelta(days=1)
            shown = [s for s in BookingState if s not in (BookingState.DRAFT,)]
            starting = await Booking.filter(
                asset__location_id=location.id,
                state__in=shown,
                start_at__gte=begin,
                start_at__lt=end,
            ).prefetch_related("asset")
            ending = await Booking.filter(
                asset__location_id=location.id, state__in=shown, end_at__gte=begin, end_at__lt=end
            ).prefetch_related("asset")
            entries = [(b.start_at, "ops.today_start", b) for b in starting] + [
                (b.end_at, "ops.today_end", b) for b in ending
            ]
            lines.append(self.t("ops.today_header", location=location.name, date=day.isoformat()))
            if not entries:
                lines.append(self.t("ops.today_none"))
            for at, key, booking in sorted(entries, key=lambda e: (e[0], e[2].id)):
                lines.append(
                    self.t(
                        key,
                        time=at.astimezone(zone).strftime("%H:%M"),
                        reference=booking.reference,
                        asset=booking.asset.code,
                        state=booking.state.value,
                    )
                )
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
        lines: list[str] = []
        for renter in renters:
            bookings = (
                await Booking.filter(renter_id=renter.id)
                .order_by("-start_at")
                .limit(5)
                .prefetch_related("asset__location")
            )
            mine = [b for b in bookings if self._in_scope(staff, b.asset.location.slug)]
            if bookings and not mine:
                continue
            lines.append(
                self.t(
                    "ops.find_line",
                    name=renter.name or "-",
                    contact=contact_of(renter),
                    bookings=", ".join(f"{b.reference} {b.state.value}" for b in mine)
                    or self.t("ops.none"),
                )
            )
        return OpsAnswer(lines or [self.t("ops.not_found", what=query)])

    async def _locks(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        lines = []
        locks = (
            await Lock.filter(retired_at__isnull=True).order_by("key").prefetch_related("location")
        )
        for lock in locks:
            if not self._in_scope(staff, lock.location.slug):
                continue
            online = {True: "ops.lock_online", False: "ops.lock_offline_now", None: "ops.unknown"}
            lines.append(
                self.t(
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
            )
        return OpsAnswer(lines or [self.t("ops.not_found", what="locks")])

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
