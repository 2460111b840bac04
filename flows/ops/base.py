"""What every command shares: the member, their role and location scope, refusals and texts."""

from __future__ import annotations

import re

from flows.access import AccessCodes
from flows.booking import Journey
from flows.handoff import OPS_LANGUAGE, Handoff
from flows.i18n import Translator
from flows.notify import language_of
from flows.ops.answers import (
    COMMANDS,
    ROLE_PERMISSIONS,
    CommandSpec,
    OpsAnswer,
    Permission,
    Refused,
)
from storage.columns import fits_column
from storage.journal import record_audit
from storage.models import Booking, Location, Lock, Renter, StaffMember
from storage.uow import UnitOfWork


class DeskBase:
    """The desk's parts and the checks every command makes: role, location scope, refusals."""

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

    def may(self, staff: StaffMember, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(staff.role, frozenset())

    def _usage(self, spec: CommandSpec) -> OpsAnswer:
        return OpsAnswer([self.t("ops.bad_usage", usage=self.t(spec.usage))])

    async def _refused(self, conn: UnitOfWork, user_id: int, command: str, why: str) -> None:
        await record_audit(
            conn,
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
            raise Refused("ops.not_found", what=reference)
        location = await Location.get(assets__id=booking.asset_id)
        if not self._in_scope(staff, location.slug):
            raise Refused("ops.out_of_scope", what=booking.reference)
        return booking

    async def _lock_in_scope(self, staff: StaffMember, key: str) -> Lock:
        lock = None
        if fits_column(Lock, "key", key):
            lock = await Lock.get_or_none(key=key, retired_at__isnull=True).prefetch_related(
                "location"
            )
        if lock is None:
            raise Refused("ops.not_found", what=key)
        if not self._in_scope(staff, lock.location.slug):
            raise Refused("ops.out_of_scope", what=lock.label)
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
            raise Refused("ops.out_of_scope", what=f"renter {renter_id}")

    async def _renter_language(self, renter_id: int) -> str:
        return await language_of(renter_id)


def actor_of(staff: StaffMember) -> str:
    return f"staff:{staff.telegram_user_id}"


def contact_of(renter: Renter) -> str:
    if renter.phone:
        return renter.phone
    return f"telegram {renter.telegram_id}" if renter.telegram_id else "-"
