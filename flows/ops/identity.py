"""Identity decisions: /approve, /reject and the Reject button's prompt for a reason."""

from __future__ import annotations

from flows.digits import DATABASE_ID_MAX, typed_int
from flows.ops.answers import BadArguments, Context, OpsAnswer, ReasonAsked, Refused
from flows.ops.base import DeskBase, actor_of
from storage.models import Booking, IdentityCheck, StaffMember
from storage.uow import UnitOfWork


class IdentityCommands(DeskBase):
    async def _check_in_scope(self, staff: StaffMember, ident: str) -> IdentityCheck:
        number = typed_int(ident, at_most=DATABASE_ID_MAX)
        if number is None:
            raise BadArguments()
        check = await IdentityCheck.get_or_none(id=number)
        if check is None:
            raise Refused("ops.not_found", what=ident)
        if check.booking_id is not None:
            booking = await Booking.get(id=check.booking_id)
            await self._booking_in_scope(staff, booking.reference)
        else:
            await self._renter_in_scope(staff, check.renter_id)
        return check

    async def _approve(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        check = await self._check_in_scope(staff, args[0])
        outcome = await self.journey.review_identity(
            conn, check.id, approved=True, reviewer=actor_of(staff), now=self.clock.now()
        )
        if outcome is None:
            return OpsAnswer([self.t("ops.decided_already", check=check.id)])
        return OpsAnswer([self.t("ops.approved", check=check.id)], outcome=outcome)

    async def _ask_rejection(self, conn: UnitOfWork, staff: StaffMember, ident: str) -> OpsAnswer:
        """The Reject button: ask the member why, as a prompt they reply to."""
        try:
            check = await self._check_in_scope(staff, ident)
        except Refused as refused:
            await self._refused(conn, staff.telegram_user_id, "button:reject", refused.key)
            return OpsAnswer([self.t(refused.key, **refused.params)])
        if check.status != "pending":
            return OpsAnswer([self.t("ops.decided_already", check=check.id)])
        prompt = self.t("ops.reject_prompt", who=staff.name, check=check.id)
        return OpsAnswer([prompt], asks=ReasonAsked(staff.name, self.t("ops.reject_placeholder")))

    async def _reject(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        check = await self._check_in_scope(staff, args[0])
        reason = args[1].strip()
        outcome = await self.journey.review_identity(
            conn,
            check.id,
            approved=False,
            reviewer=actor_of(staff),
            reason=reason,
            now=self.clock.now(),
        )
        if outcome is None:
            return OpsAnswer([self.t("ops.decided_already", check=check.id)])
        return OpsAnswer([self.t("ops.rejected", check=check.id, reason=reason)], outcome=outcome)
