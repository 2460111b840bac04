"""The operators' commands and alert buttons: who may do what, and doing it through the flows.

Each command checks the staff member's role and location scope, then changes state through the
same flows the renter side uses (cancel, revoke, extend, open, staff codes, identity decisions,
hand-off), so nothing bypasses the outbox, the audit or the lock lifecycle. Answers are a few
lines of text from the catalogs, in the ops group's language. A refused attempt is audited; a bad
argument answers with the command's usage before anything is changed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from flows.access import LIVE_STATES, SET_EFFECT, AccessCodes
from flows.bookings import IllegalTransition, extended_range, is_free
from flows.digits import DATABASE_ID_MAX, INT64_MAX, is_ascii_number, typed_int
from flows.effects import Audit, Effect, Outcome
from flows.handoff import OPS_LANGUAGE, Handoff, HandoffRefused, TakenOver
from flows.i18n import Translator, local_time
from flows.journey import LIVE_BOOKING, REFUND_EFFECT, Journey
from flows.messages import Media
from flows.ops_scope import alert_locations
from flows.remote_open import open_effect
from flows.staging import stage_outcome
from flows.when import WhenNotUnderstood, parse_duration
from locks import LockCapability
from locks.port import capabilities_from_json
from locks.windows import AccessWindow
from storage.columns import fits_column
from storage.journal import record_audit, resolve_alert
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AuditEvent,
    Booking,
    BookingState,
    Conversation,
    EffectState,
    Extension,
    IdentityCheck,
    Location,
    Lock,
    OpsAlert,
    OutboxEffect,
    Payment,
    Renter,
    StaffMember,
    StaffRole,
)
from storage.money import Money, MoneyError


class Permission(StrEnum):
    READ = "read"  # bookings, renters, locks, audit
    MANAGE = "manage"  # cancel, revoke, extend, retry
    ACCESS = "access"  # staff codes, remote opens
    TALK = "talk"  # take over and answer renters
    IDENTITY = "identity"  # approve or reject IDs
    ALERTS = "alerts"  # resolve alerts


ROLE_PERMISSIONS: dict[StaffRole, frozenset[Permission]] = {
    StaffRole.OWNER: frozenset(Permission),
    StaffRole.MANAGER: frozenset(Permission),
    StaffRole.SUPPORT: frozenset(
        {Permission.READ, Permission.TALK, Permission.IDENTITY, Permission.ALERTS}
    ),
    StaffRole.MAINTENANCE: frozenset({Permission.ACCESS}),
}
MAX_STAFF_CODE_HOURS = 24 * 14
#: Hours or money as operators type them (``3``, ``1.5``, ``25,00``): ASCII digits, a few of them.
_TYPED_AMOUNT = re.compile(r"[0-9]{1,9}(?:[.,][0-9]{1,2})?")
HISTORY = 15


@dataclass(frozen=True)
class CommandSpec:
    permission: Permission | None  # None: every staff member
    usage: str  # message key of the usage line
    least: int  # arguments at least
    most: int | None  # at most (None: the rest is one free text)


COMMANDS: dict[str, CommandSpec] = {
    "today": CommandSpec(Permission.READ, "ops.usage_today", 0, 0),
    "booking": CommandSpec(Permission.READ, "ops.usage_booking", 1, 1),
    "find": CommandSpec(Permission.READ, "ops.usage_find", 1, None),
    "cancel": CommandSpec(Permission.MANAGE, "ops.usage_cancel", 1, 2),
    "revoke": CommandSpec(Permission.MANAGE, "ops.usage_revoke", 1, 1),
    "extend": CommandSpec(Permission.MANAGE, "ops.usage_extend", 2, None),
    "open": CommandSpec(Permission.ACCESS, "ops.usage_open", 1, 1),
    "staffcode": CommandSpec(Permission.ACCESS, "ops.usage_staffcode", 2, None),
    "locks": CommandSpec(Permission.READ, "ops.usage_locks", 0, 0),
    "audit": CommandSpec(Permission.READ, "ops.usage_audit", 1, 1),
    "takeover": CommandSpec(Permission.TALK, "ops.usage_takeover", 1, 1),
    "release": CommandSpec(Permission.TALK, "ops.usage_release", 0, 1),
    "reply": CommandSpec(Permission.TALK, "ops.usage_reply", 2, None),
    "approve": CommandSpec(Permission.IDENTITY, "ops.usage_approve", 1, 1),
    "reject": CommandSpec(Permission.IDENTITY, "ops.usage_reject", 2, None),
    "help": CommandSpec(None, "ops.usage_help", 0, 0),
}
#: Alert buttons: the action in the callback data and what it needs.
BUTTON_PERMISSIONS: dict[str, Permission] = {
    "approve": Permission.IDENTITY,
    "reject": Permission.IDENTITY,
    "take": Permission.TALK,
    "retry": Permission.MANAGE,
    "resolve": Permission.ALERTS,
}


@dataclass
class OpsAnswer:
    lines: list[str] = field(default_factory=list)
    #: Only for the asking staff member's eyes (a PIN): the glue sends them privately.
    private: list[str] = field(default_factory=list)
    #: A conversation just taken over: the glue gives it a forum topic where it can.
    taken: TakenOver | None = None
    #: The first line asks the member for a reason, which they give by replying to it.
    asks: ReasonAsked | None = None


@dataclass(frozen=True)
class ReasonAsked:
    """A prompt the member answers by replying to it (Telegram's ForceReply). It starts with
    ``who``, the member's name, so that in a group only they get the reply field."""

    who: str
    placeholder: str


@dataclass(frozen=True)
class Context:
    """Where a command was given: the conversation whose forum topic it was written in."""

    conversation_id: int | None = None


class _Usage(Exception):
    """A bad argument: answer with the command's usage, change nothing."""


class _Refused(Exception):
    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


Handler = Callable[[StaffMember, list[str], Context], Awaitable[OpsAnswer]]


class OpsDesk:
    """Runs operators' commands and alert buttons for a Telegram user id."""

    def __init__(
        self,
        translator: Translator,
        journey: Journey,
        access: AccessCodes,
        handoff: Handoff,
    ) -> None:
        self.translator = translator
        self.journey = journey
        self.access = access
        self.handoff = handoff
        self.clock = journey.clock
        self._reject_prompt = self._pattern(
            "ops.reject_prompt", who=".*?", check=r"(?P<check>[0-9]+)"
        )
        self._handlers: dict[str, Handler] = {
            "today": self._today,
            "booking": self._booking,
            "find": self._find,
            "cancel": self._cancel,
            "revoke": self._revoke,
            "extend": self._extend,
            "open": self._open,
            "staffcode": self._staffcode,
            "locks": self._locks,
            "audit": self._audit,
            "takeover": self._takeover,
            "release": self._release,
            "reply": self._reply,
            "approve": self._approve,
            "reject": self._reject,
            "help": self._help,
        }

    def t(self, key: str, **params: object) -> str:
        return self.translator.text(OPS_LANGUAGE, key, **params)

    def _pattern(self, key: str, **slots: str) -> re.Pattern[str]:
        """A regular expression matching the text of ``key`` with ``slots`` in its fields."""
        marked = self.t(key, **{name: f"\x00{name}\x00" for name in slots})
        pattern, seen = "", set()
        for index, piece in enumerate(marked.split("\x00")):
            if index % 2 == 0:
                pattern += re.escape(piece)
            elif piece in seen and f"(?P<{piece}>" in slots[piece]:
                pattern += f"(?P={piece})"  # the same value again
            else:
                pattern += slots[piece]
                seen.add(piece)
        return re.compile(pattern + r"\Z", re.DOTALL)

    async def staff(self, user_id: int) -> StaffMember | None:
        return await StaffMember.get_or_none(telegram_user_id=user_id, active=True)

    @staticmethod
    def is_command(name: str) -> bool:
        return name in COMMANDS

    # -- entry points -------------------------------------------------------------------------

    async def run(
        self, user_id: int, command: str, args: list[str], context: Context | None = None
    ) -> OpsAnswer:
        context = context or Context()
        spec = COMMANDS.get(command)
        staff = await self.staff(user_id)
        if staff is None:
            await self._refused(user_id, command, "not staff")
            return OpsAnswer([self.t("ops.not_staff")])
        if spec is None:
            return OpsAnswer([self.t("ops.unknown_command", command=f"/{command}")])
        if spec.permission is not None and not self.may(staff, spec.permission):
            await self._refused(user_id, command, f"role {staff.role}")
            return OpsAnswer([self.t("ops.refused", command=f"/{command}")])
        if len(args) < spec.least or (spec.most is not None and len(args) > spec.most):
            return self._usage(spec)
        if spec.most is None and len(args) > spec.least:
            args = [*args[: spec.least - 1], " ".join(args[spec.least - 1 :])]
        try:
            return await self._handlers[command](staff, args, context)
        except _Usage:
            return self._usage(spec)
        except _Refused as refused:
            await self._refused(user_id, command, refused.key)
            return OpsAnswer([self.t(refused.key, **refused.params)])
        except HandoffRefused as refused:
            return OpsAnswer([self.t(refused.key, **refused.params)])

    async def press(self, user_id: int, action: str, ident: str) -> OpsAnswer:
        """An alert's button: ``action`` on the check, conversation or alert ``ident``. Each
        checks the member's role, then their location scope against what it acts on."""
        staff = await self.staff(user_id)
        permission = BUTTON_PERMISSIONS.get(action)
        number = typed_int(ident, at_most=DATABASE_ID_MAX)
        if staff is None or permission is None:
            await self._refused(user_id, f"button:{action[:20]}", "not staff")
            return OpsAnswer([self.t("ops.not_staff")])
        if not self.may(staff, permission):
            await self._refused(user_id, f"button:{action}", f"role {staff.role}")
            return OpsAnswer([self.t("ops.refused", command=action)])
        if number is None:
            return OpsAnswer([self.t("ops.not_found", what=ident[:20])])
        if action == "approve":
            return await self.run(user_id, "approve", [ident])
        if action == "reject":
            return await self._ask_rejection(staff, ident)
        if action == "take":
            return await self.run(user_id, "takeover", [ident])
        alert = await OpsAlert.get_or_none(id=number)
        if alert is None:
            return OpsAnswer([self.t("ops.not_found", what=ident)])
        slugs = await alert_locations(alert)
        if slugs and not any(self._in_scope(staff, slug) for slug in slugs):
            await self._refused(user_id, f"button:{action}", "out of scope")
            return OpsAnswer([self.t("ops.alert_out_of_scope", alert=alert.id)])
        if action == "resolve" and alert.kind == "id_review":
            # Resolving would drop the photo from the group and leave the check pending.
            await self._refused(user_id, "button:resolve", "an ID review is decided, not resolved")
            check = alert.params.get("check", "-")
            return OpsAnswer([self.t("ops.id_review_not_resolved", check=check)])
        if action == "resolve":
            return await self._resolve(staff, alert)
        return await self._retry(staff, alert)

    def may(self, staff: StaffMember, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(staff.role, frozenset())

    def _usage(self, spec: CommandSpec) -> OpsAnswer:
        return OpsAnswer([self.t("ops.bad_usage", usage=self.t(spec.usage))])

    async def _refused(self, user_id: int, command: str, why: str) -> None:
        await record_audit(
            None,
            at=self.clock.now(),
            actor=f"telegram:{user_id}",
            action="ops.refused",
            subject=command[:64],  # the column's length: a stranger may type any command
            details={"reason": why},
        )

    # -- scope --------------------------------------------------------------------------------

    @staticmethod
    def _in_scope(staff: StaffMember, slug: str) -> bool:
        scope = list(staff.location_scope)
        return not scope or slug in scope

    async def _booking_in_scope(self, staff: StaffMember, reference: str) -> Booking:
        reference = reference.upper()
        booking = None
        if fits_column(Booking, "reference", reference):
            booking = await Booking.get_or_none(reference=reference)
        if booking is None:
            raise _Refused("ops.not_found", what=reference)
        location = await Location.get(assets__id=booking.asset_id)
        if not self._in_scope(staff, location.slug):
            raise _Refused("ops.out_of_scope", what=booking.reference)
        return booking

    async def _lock_in_scope(self, staff: StaffMember, key: str) -> Lock:
        lock = None
        if fits_column(Lock, "key", key):
            lock = await Lock.get_or_none(key=key, retired_at__isnull=True).prefetch_related(
                "location"
            )
        if lock is None:
            raise _Refused("ops.not_found", what=key)
        if not self._in_scope(staff, lock.location.slug):
            raise _Refused("ops.out_of_scope", what=lock.label)
        return lock

    async def _renter_in_scope(self, staff: StaffMember, renter_id: int | None) -> None:
        """A renter with bookings only elsewhere is out of a scoped member's reach."""
        if renter_id is None or not staff.location_scope:
            return
        slugs = set(
            await Booking.filter(renter_id=renter_id).values_list(
                "asset__location__slug", flat=True
            )
        )
        if slugs and not any(self._in_scope(staff, str(slug)) for slug in slugs):
            raise _Refused("ops.out_of_scope", what=f"renter {renter_id}")

    # -- reading ------------------------------------------------------------------------------

    async def _today(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
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

    async def _booking(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
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
                self.t("ops.booking_renter", name=renter.name or "-", contact=_contact(renter)),
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

    async def _find(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        query = args[0].strip()
        digits = "".join(c for c in query if is_ascii_number(c, most_digits=1))
        if len(query) < 2:
            raise _Usage()
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
                    contact=_contact(renter),
                    bookings=", ".join(f"{b.reference} {b.state.value}" for b in mine)
                    or self.t("ops.none"),
                )
            )
        return OpsAnswer(lines or [self.t("ops.not_found", what=query)])

    async def _locks(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
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

    async def _audit(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
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

    async def _help(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        lines = [self.t("ops.help_header", name=staff.name, role=staff.role.value)]
        lines += [
            self.t(spec.usage)
            for spec in COMMANDS.values()
            if spec.permission is None or self.may(staff, spec.permission)
        ]
        return OpsAnswer(lines)

    # -- changing bookings and locks ----------------------------------------------------------

    async def _cancel(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        refund = _refund(args[1], booking) if len(args) > 1 else None
        if booking.state not in LIVE_BOOKING:
            raise _Refused("ops.cannot_cancel", reference=booking.reference, state=booking.state)
        now = self.clock.now()
        actor = _actor(staff)
        language = await self._renter_language(booking.renter_id)
        try:
            async with in_transaction() as conn:
                outcome = await self.journey.cancel_booking(
                    conn, booking, actor=actor, now=now, refund=refund
                )
                amount = sum(
                    int(e.payload.get("amount", 0))
                    for e in outcome.effects
                    if e.kind == REFUND_EFFECT
                )
                shown = Money(amount, booking.currency).format(OPS_LANGUAGE)
                await self.journey.notifier.tell(
                    conn,
                    booking.renter_id,
                    "journey.cancelled",
                    now=now,
                    kind="receipt",
                    params={
                        "reference": booking.reference,
                        "refund": Money(amount, booking.currency).format(language),
                    },
                )
                await stage_outcome(conn, outcome, now)
        except IllegalTransition:
            raise _Refused(
                "ops.cannot_cancel", reference=booking.reference, state=booking.state
            ) from None
        return OpsAnswer([self.t("ops.cancelled", reference=booking.reference, refund=shown)])

    async def _revoke(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        now = self.clock.now()
        async with in_transaction() as conn:
            codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES).using_db(
                conn
            )
            outcome = await self.access.revoke(
                conn, codes, actor=_actor(staff), reason="revoked by staff"
            )
            await stage_outcome(conn, outcome, now)
        return OpsAnswer(
            [self.t("ops.revoked", reference=booking.reference, count=len(outcome.effects))]
        )

    async def _extend(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        try:
            extra = parse_duration(args[1])
        except WhenNotUnderstood:
            raise _Usage() from None
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            raise _Refused("ops.cannot_extend", reference=booking.reference, state=booking.state)
        new_end = booking.end_at + extra
        if not await is_free(booking.asset_id, extended_range(booking, new_end), ignore=booking.id):
            return OpsAnswer([self.t("ops.extend_conflict", reference=booking.reference)])
        now = self.clock.now()
        async with in_transaction() as conn:
            extension = await Extension.create(
                booking=booking,
                old_end_at=booking.end_at,
                new_end_at=new_end,
                price_cents=0,
                using_db=conn,
            )
            outcome = await self.journey._apply_extension(conn, extension)
            outcome.audits.append(
                Audit(
                    _actor(staff),
                    "booking.extended_by_staff",
                    f"booking:{booking.reference}",
                    {"until": new_end.isoformat()},
                )
            )
            await stage_outcome(conn, outcome, now)
        location = await Location.get(assets__id=booking.asset_id)
        return OpsAnswer(
            [
                self.t(
                    "ops.extended",
                    reference=booking.reference,
                    end=local_time(new_end, location.timezone, OPS_LANGUAGE),
                )
            ]
        )

    async def _open(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        lock = await self._lock_in_scope(staff, args[0])
        if LockCapability.REMOTE_UNLOCK not in capabilities_from_json(
            lock.capabilities, lock.provider
        ):
            return OpsAnswer([self.t("ops.cannot_open", lock=lock.label)])
        now = self.clock.now()
        stamp = f"{staff.telegram_user_id}:{now.timestamp()}"
        outcome = Outcome(
            effects=[
                open_effect(
                    lock,
                    f"open:{lock.id}:staff:{stamp}",
                    now=now,
                    lifetime=self.journey.settings.open_lifetime,
                    staff=staff.name,
                )
            ],
            audits=[Audit(_actor(staff), "lock.remote_open", f"lock:{lock.key}")],
        )
        async with in_transaction() as conn:
            await stage_outcome(conn, outcome, now)
        # "Opened" (or that it could not be) comes as its own message once the lock answers.
        return OpsAnswer([self.t("ops.open_asked", lock=lock.label)])

    async def _staffcode(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        lock = await self._lock_in_scope(staff, args[0])
        words = args[1].split(maxsplit=1)
        if not _TYPED_AMOUNT.fullmatch(words[0]):
            raise _Usage()
        hours = float(words[0].replace(",", "."))
        if not 0 < hours <= MAX_STAFF_CODE_HOURS:
            raise _Usage()
        label = words[1] if len(words) > 1 else staff.name
        now = self.clock.now()
        window = AccessWindow(now, now + timedelta(hours=hours))
        async with in_transaction() as conn:
            outcome = await self.access.plan_staff_code(conn, staff, lock, window, label[:100])
            await stage_outcome(conn, outcome, now)
        code = await AccessCode.filter(staff_id=staff.id, lock_id=lock.id).order_by("-id").first()
        if code is None:  # the lock takes no codes: plan_staff_code raised an alert instead
            return OpsAnswer([self.t("ops.cannot_set_code", lock=lock.label)])
        until = local_time(window.ends_at, lock.timezone, OPS_LANGUAGE)
        answer = OpsAnswer(
            [self.t("ops.staffcode", code=code.id, lock=lock.label, end=until)],
        )
        if code.pin_encrypted:
            pin = self.access.sealer.open(code.pin_encrypted)
            answer.private.append(self.t("ops.staffcode_pin", lock=lock.label, pin=pin, end=until))
        return answer

    def _code_line(self, code: AccessCode, tz: str) -> str:
        line = f"{code.lock.label} {code.state.value}"
        if code.offline:  # it works until its end, whatever its state says
            until = local_time(code.ends_at, tz, OPS_LANGUAGE)
            line += " " + self.t("ops.code_offline_until", until=until)
        return line

    # -- identity -----------------------------------------------------------------------------

    async def _check_in_scope(self, staff: StaffMember, ident: str) -> IdentityCheck:
        number = typed_int(ident, at_most=DATABASE_ID_MAX)
        if number is None:
            raise _Usage()
        check = await IdentityCheck.get_or_none(id=number)
        if check is None:
            raise _Refused("ops.not_found", what=ident)
        if check.booking_id is not None:
            booking = await Booking.get(id=check.booking_id)
            await self._booking_in_scope(staff, booking.reference)
        else:
            await self._renter_in_scope(staff, check.renter_id)
        return check

    async def _approve(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        check = await self._check_in_scope(staff, args[0])
        if not await self.journey.decide_identity(check.id, approved=True, reviewer=_actor(staff)):
            return OpsAnswer([self.t("ops.decided_already", check=check.id)])
        return OpsAnswer([self.t("ops.approved", check=check.id)])

    async def _ask_rejection(self, staff: StaffMember, ident: str) -> OpsAnswer:
        """The Reject button: ask the member why, as a prompt they reply to."""
        try:
            check = await self._check_in_scope(staff, ident)
        except _Refused as refused:
            await self._refused(staff.telegram_user_id, "button:reject", refused.key)
            return OpsAnswer([self.t(refused.key, **refused.params)])
        if check.status != "pending":
            return OpsAnswer([self.t("ops.decided_already", check=check.id)])
        prompt = self.t("ops.reject_prompt", who=staff.name, check=check.id)
        return OpsAnswer([prompt], asks=ReasonAsked(staff.name, self.t("ops.reject_placeholder")))

    async def answer_prompt(self, user_id: int, prompt: str, text: str) -> OpsAnswer | None:
        """A member replied ``text`` to one of Keyturn's messages, ``prompt``: the reason for a
        rejection it asked for. None when ``prompt`` asked for nothing."""
        asked = self._reject_prompt.match(prompt)
        if asked is None:
            return None
        reason = text.strip()
        if not reason or reason.startswith("/"):
            return OpsAnswer([self.t("ops.reason_needed")])
        return await self.run(user_id, "reject", [asked["check"], reason])

    async def _reject(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        check = await self._check_in_scope(staff, args[0])
        reason = args[1].strip()
        decided = await self.journey.decide_identity(
            check.id, approved=False, reviewer=_actor(staff), reason=reason
        )
        if not decided:
            return OpsAnswer([self.t("ops.decided_already", check=check.id)])
        return OpsAnswer([self.t("ops.rejected", check=check.id, reason=reason)])

    # -- hand-off -----------------------------------------------------------------------------

    async def _conversation(self, staff: StaffMember, ident: str) -> Conversation:
        conversation = await self.handoff.find(ident)
        if conversation is None:
            raise _Refused("ops.not_found", what=ident)
        await self._renter_in_scope(staff, conversation.renter_id)
        return conversation

    async def _takeover(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        conversation = await self._conversation(staff, args[0])
        taken = await self.handoff.take_over(conversation.id, staff)
        lines = [self.t("ops.taken_over", who=taken.who, channel=taken.channel)]
        lines += list(taken.transcript) or [self.t("ops.transcript_empty")]
        return OpsAnswer(lines, taken=taken)

    async def _release(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        if args:
            conversations = [await self._conversation(staff, args[0])]
        elif ctx.conversation_id is not None:
            conversations = [await Conversation.get(id=ctx.conversation_id)]
        else:
            conversations = await self.handoff.taken_by(staff)
        lines = []
        for conversation in conversations:
            mine = conversation.agent_id == staff.telegram_user_id
            if not mine and not self.may(staff, Permission.MANAGE):
                raise HandoffRefused("ops.not_yours", who=await self.handoff.who(conversation))
            if await self.handoff.release(conversation.id, by=_actor(staff), tell_staff=False):
                lines.append(self.t("ops.released", who=await self.handoff.who(conversation)))
        return OpsAnswer(lines or [self.t("ops.not_taken")])

    async def _reply(self, staff: StaffMember, args: list[str], ctx: Context) -> OpsAnswer:
        conversation = await self._conversation(staff, args[0])
        await self.handoff.staff_says(conversation.id, staff, args[1])
        return OpsAnswer([self.t("ops.reply_sent", who=await self.handoff.who(conversation))])

    async def say_in_topic(
        self, user_id: int, conversation_id: int, text: str, media: tuple[Media, ...] = ()
    ) -> OpsAnswer:
        """A staff member wrote (or posted a photo) in a conversation's forum topic: it goes to
        the renter."""
        staff = await self.staff(user_id)
        if staff is None or not self.may(staff, Permission.TALK):
            await self._refused(user_id, "topic message", "not allowed to talk to renters")
            return OpsAnswer([self.t("ops.refused", command="reply")])
        try:
            await self.handoff.staff_says(conversation_id, staff, text, media)
        except HandoffRefused as refused:
            return OpsAnswer([self.t(refused.key, **refused.params)])
        return OpsAnswer()

    # -- alerts -------------------------------------------------------------------------------

    async def _resolve(self, staff: StaffMember, alert: OpsAlert) -> OpsAnswer:
        if alert.open_key is None:
            return OpsAnswer([self.t("ops.resolved_already")])
        now = self.clock.now()
        async with in_transaction() as conn:
            await resolve_alert(conn, group_key=alert.open_key, now=now, by=staff.name)
            await record_audit(
                conn,
                at=now,
                actor=_actor(staff),
                action="alert.resolved",
                subject=f"alert:{alert.id}",
            )
        return OpsAnswer([self.t("ops.resolved_ok")])

    async def _retry(self, staff: StaffMember, alert: OpsAlert) -> OpsAnswer:
        now = self.clock.now()
        kind, _, ident = alert.group_key.partition(":")
        outcome = Outcome(
            audits=[Audit(_actor(staff), "alert.retried", f"alert:{alert.id}")],
        )
        effect_id = typed_int(ident, at_most=INT64_MAX)
        if kind == "effect" and effect_id is not None:
            await OutboxEffect.filter(
                id=effect_id, state__in=(EffectState.PENDING, EffectState.DEAD)
            ).update(state=EffectState.PENDING, next_attempt_at=now)
        elif kind in ("code-not-set", "code-rejected"):
            codes = await AccessCode.filter(
                lock__key=ident,
                state__in=(
                    AccessCodeState.PENDING,
                    AccessCodeState.PROGRAMMING,
                    AccessCodeState.FAILED,
                ),
                ends_at__gt=now,
            )
            outcome.effects += [
                Effect(
                    SET_EFFECT,
                    f"access:set:{code.id}:retry:{now.timestamp()}",
                    {"code": code.id, "fresh": code.state == AccessCodeState.FAILED},
                )
                for code in codes
            ]
        else:
            return OpsAnswer([self.t("ops.cannot_retry")])
        async with in_transaction() as conn:
            await stage_outcome(conn, outcome, now)
        return OpsAnswer([self.t("ops.retrying")])

    async def _renter_language(self, renter_id: int) -> str:
        renter = await Renter.get(id=renter_id)
        conversation = (
            await Conversation.filter(renter_id=renter_id).order_by("-last_inbound_at").first()
        )
        return await self.journey.notifier.language(renter, conversation)


def _actor(staff: StaffMember) -> str:
    return f"staff:{staff.telegram_user_id}"


def _contact(renter: Renter) -> str:
    if renter.phone:
        return renter.phone
    return f"telegram {renter.telegram_id}" if renter.telegram_id else "-"


def _refund(word: str, booking: Booking) -> int:
    """``full``, ``none`` or an amount in the booking's currency, in major units (``25.00``,
    ``1500`` yen) → its minor units."""
    lowered = word.lower()
    if lowered == "full":
        return booking.price_cents
    if lowered in ("none", "no", "0"):
        return 0
    if not re.fullmatch(r"-?[0-9.,]+", word):  # ASCII digits only: "NaN", "²" are no amount
        raise _Usage()
    price = Money(booking.price_cents, booking.currency)
    try:
        refund = Money.parse(word, booking.currency)
    except MoneyError:
        refund = None
    if refund is None or refund > price:
        raise _Refused(
            "ops.bad_refund",
            reference=booking.reference,
            amount=word,
            currency=price.currency,
            most=price.amount,
        )
    return refund.minor
