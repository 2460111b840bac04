"""A late fee still processing is read back from the provider until it is decided.

Recording a charge that came back processing sets its check timer (late_fees). Each check
reads the charge's state from the provider, outside any transaction: decided, it is settled
exactly as the provider's event would settle it (late_fee_outcomes), in the timer's unit of
work; still processing (or the provider not answering), it is looked at again later, less
often each time. The event and the check race freely: whichever moves the payment from
``created`` first tells the renter, and the other finds nothing left to do (an event that
came before the charge was recorded finds no payment at all, and the check settles it).
Ops hear once when a fee is still undecided days later; the checks go on.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flows.booking.common import LATE_FEE_PROCESSING_ALERT, at
from flows.booking.late_fee_outcomes import late_fee_check
from flows.booking.late_fees import LateFees
from flows.effects import Alert, Outcome
from flows.payments import ChargeState, PaymentError
from flows.timers import TimerFired
from storage.kinds import AlertKind
from storage.models import Booking, Payment
from storage.money import Money
from storage.payments import PaymentStatus
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


class LateFeeChecks(LateFees):
    """The BOOKING_LATE_FEE_CHECK timer (payload ``{"payment", "since", "looks",
    "alerted"}``: the late fee's payment, when it was charged, how often it was read back,
    whether ops heard of it)."""

    async def on_late_fee_check(self, event: TimerFired) -> Outcome:
        payment = await Payment.get_or_none(id=int(str(event.payload["payment"])))
        if payment is None or payment.status != PaymentStatus.CREATED:
            return Outcome()  # its event settled it first
        now = self.clock.now()
        try:
            state = await self.payments.charge_state(str(payment.provider_ref))
        except PaymentError as err:
            log.warning("late fee %s could not be read back: %s", payment.provider_ref, err)
            state = ChargeState.PROCESSING
        booking = await Booking.get(id=payment.booking_id)
        if state is ChargeState.PROCESSING:
            return self._still_processing(booking, payment, event, now)
        paid = state is ChargeState.PAID

        async def settle(conn: UnitOfWork) -> Outcome:
            # Read again in the runner's transaction: its event may have settled it meanwhile.
            current = await Payment.filter(id=payment.id).using_db(conn).get()
            settled = await self._late_fee_outcome(conn, booking, current, paid=paid, now=now)
            return settled or Outcome()

        return Outcome(writes=[settle])

    def _still_processing(
        self, booking: Booking, payment: Payment, event: TimerFired, now: datetime
    ) -> Outcome:
        """Looked at again later; ops told once, when it has been undecided for days."""
        since = at(event.payload["since"])
        looks = int(str(event.payload.get("looks", 0))) + 1
        alerted = bool(event.payload.get("alerted"))
        alert = not alerted and now - since >= LATE_FEE_PROCESSING_ALERT
        outcome = Outcome(
            timers=[late_fee_check(payment, since, now, looks=looks, alerted=alerted or alert)]
        )
        if alert:
            fee = Money(payment.amount_cents, payment.currency)
            outcome.alerts.append(
                Alert(
                    AlertKind.LATE_FEE_PROCESSING,
                    f"late-fee-processing:{booking.reference}",
                    "ops.late_fee_processing",
                    {
                        "booking": booking.reference,
                        "amount": fee.format("en"),
                        "days": (now - since).days,
                        "payment": payment.provider_ref,
                    },
                )
            )
        return outcome
