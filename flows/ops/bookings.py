"""Changing bookings: /cancel (with a refund), /revoke and /extend."""

from __future__ import annotations

from flows.access import LIVE_STATES
from flows.booking import LIVE_BOOKING, REFUND_EFFECT
from flows.bookings import IllegalTransition, extended_range, is_free
from flows.effects import Audit
from flows.handoff import OPS_LANGUAGE
from flows.i18n import local_time
from flows.ops.answers import BadArguments, Context, OpsAnswer, Refused
from flows.ops.base import DeskBase, actor_of
from flows.ops.money import refund_cents
from flows.when import WhenNotUnderstood, parse_duration
from storage.models import AccessCode, Booking, BookingState, Extension, Location, StaffMember
from storage.money import Money
from storage.uow import UnitOfWork


class BookingCommands(DeskBase):
    async def _cancel(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        refund = refund_cents(args[1], booking) if len(args) > 1 else None
        if booking.state not in LIVE_BOOKING:
            raise Refused("ops.cannot_cancel", reference=booking.reference, state=booking.state)
        now = self.clock.now()
        actor = actor_of(staff)
        language = await self._renter_language(booking.renter_id)
        try:
            # The booking's guarded move is the first write: refused, it has changed nothing.
            outcome = await self.journey.cancel_booking(
                conn, booking, actor=actor, now=now, refund=refund
            )
        except IllegalTransition:
            raise Refused(
                "ops.cannot_cancel", reference=booking.reference, state=booking.state
            ) from None
        amount = sum(
            int(e.payload.get("amount", 0)) for e in outcome.effects if e.kind == REFUND_EFFECT
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
        answer = [self.t("ops.cancelled", reference=booking.reference, refund=shown)]
        return OpsAnswer(answer, outcome=outcome)

    async def _revoke(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        codes = await AccessCode.filter(booking_id=booking.id, state__in=LIVE_STATES).using_db(conn)
        outcome = await self.access.revoke(
            conn, codes, actor=actor_of(staff), reason="revoked by staff"
        )
        return OpsAnswer(
            [self.t("ops.revoked", reference=booking.reference, count=len(outcome.effects))],
            outcome=outcome,
        )

    async def _extend(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        in_scope = await self._booking_in_scope(staff, args[0])
        try:
            extra = parse_duration(args[1])
        except WhenNotUnderstood:
            raise BadArguments() from None
        # Read again in the unit of work (locked on PostgreSQL): the end is extended from the
        # end the booking has now, not one a paid extension moved since the look-up.
        booking = await Booking.filter(id=in_scope.id).using_db(conn).select_for_update().get()
        if booking.state not in (BookingState.CONFIRMED, BookingState.ACTIVE):
            raise Refused("ops.cannot_extend", reference=booking.reference, state=booking.state)
        new_end = booking.end_at + extra
        free = await is_free(
            booking.asset_id, extended_range(booking, new_end), ignore=booking.id, conn=conn
        )
        if not free:
            return OpsAnswer([self.t("ops.extend_conflict", reference=booking.reference)])
        extension = await Extension.create(
            booking=booking,
            old_end_at=booking.end_at,
            new_end_at=new_end,
            price_cents=0,
            using_db=conn,
        )
        try:
            outcome = await self.journey.apply_extension(conn, extension)
        except IllegalTransition:
            # Moved since it was read: nothing was extended, and no extension is kept.
            await Extension.filter(id=extension.id).using_db(conn).delete()
            raise Refused(
                "ops.cannot_extend", reference=booking.reference, state=booking.state
            ) from None
        outcome.audits.append(
            Audit(
                actor_of(staff),
                "booking.extended_by_staff",
                f"booking:{booking.reference}",
                {"until": new_end.isoformat()},
            )
        )
        location = await Location.get(assets__id=booking.asset_id)
        return OpsAnswer(
            [
                self.t(
                    "ops.extended",
                    reference=booking.reference,
                    end=local_time(new_end, location.timezone, OPS_LANGUAGE),
                )
            ],
            outcome=outcome,
        )
