"""``/returned <booking>``: an owner or manager confirms a return by hand.

A return is confirmed by the renter's checklist and, for an item with a tracker, GPS seeing it
home. When one of them never comes (a tracker out of battery, a renter who walked away without
DONE) the deposit would wait for ever; a person who saw the item back confirms it instead, and
the damage review and the deposit's release follow as for any confirmed return.
"""

from __future__ import annotations

from flows.effects import Audit
from flows.ops.answers import Context, OpsAnswer, Refused
from flows.ops.base import DeskBase, actor_of
from flows.returns import confirm_by_staff
from storage.models import Booking, StaffMember
from storage.returns import RETURNABLE_STATES
from storage.uow import UnitOfWork


class ReturnCommands(DeskBase):
    async def _returned(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        now = self.clock.now()
        current = await Booking.filter(id=booking.id).using_db(conn).get()
        if current.returned_at is not None:
            raise Refused("ops.already_returned", booking=booking.reference)
        if current.state not in RETURNABLE_STATES or current.blocked_from > now:
            raise Refused("ops.return_not_open", booking=booking.reference)
        journey = self.journey
        outcome = await confirm_by_staff(
            conn, booking.id, now, journey.settings.returns, journey.notifier
        )
        outcome.audits.append(
            Audit(
                actor_of(staff), "booking.return_confirmed_by_staff", f"booking:{booking.reference}"
            )
        )
        await current.refresh_from_db(using_db=conn)
        timing = self.t(f"ops.return_timing_{current.return_timing or 'on_time'}")
        text = self.t("ops.returned", booking=booking.reference, who=staff.name, timing=timing)
        return OpsAnswer([text], outcome=outcome)
