"""A late return's fee, charged off-session on the card saved at checkout.

The charge runs outside any transaction under the effect's idempotency key (a retry is the
same charge), named for its booking and purpose; what the provider answered is recorded by the
follow-up, and the renter is told "charged" only once the money moved. A charge still
processing is recorded with a timer that reads it back until it is decided (late_fee_checks),
so its outcome does not hang on the provider's event, which may come before the record, late,
or never (late_fee_outcomes). A card whose bank wants the renter (3-D Secure) gets a payment
link instead; a declined card goes to ops, and the renter hears that a person will be in touch.
"""

from __future__ import annotations

from flows.booking.common import LATE_FEE_LINK_ROOM
from flows.booking.late_fee_outcomes import (
    late_fee_check,
    late_fee_link,
    link_key,
    receipt_unless_deposit,
    tell_fee,
    tell_late_fee_charged,
)
from flows.booking.rental_timers import RentalTimers
from flows.effects import Alert, Audit, FollowUp, Outcome
from flows.payments import OffSessionCharge, PaymentNeedsAuthentication, PaymentRefused
from storage.kinds import AlertKind
from storage.models import Booking, OutboxEffect, Payment
from storage.money import Money
from storage.payments import PaymentPurpose, PaymentStatus
from storage.uow import UnitOfWork


class LateFees(RentalTimers):
    """The PAYMENT_LATE_FEE effect (payload ``{"booking": id}``; the amount is the booking's
    ``late_fee_cents``, fixed when the return was confirmed)."""

    async def execute_late_fee(self, effect: OutboxEffect) -> FollowUp | None:
        booking = await Booking.get(id=int(str(effect.payload["booking"]))).select_related("asset")
        fee = Money(booking.late_fee_cents, booking.currency)
        if fee.minor <= 0:
            return None
        if await Payment.filter(booking_id=booking.id, purpose=PaymentPurpose.LATE_FEE).exists():
            return None  # charged, linked or declined already: this is a stale retry
        card = await self._saved_card_of(booking)
        if card is None:
            return self._late_fee_link(effect, booking, fee, "no saved card")
        customer, method = card
        try:
            charge = await self.payments.charge_saved_card(
                customer,
                method,
                fee,
                effect.idempotency_key,
                metadata={"booking": booking.reference, "purpose": PaymentPurpose.LATE_FEE},
            )
        except PaymentNeedsAuthentication:
            return self._late_fee_link(effect, booking, fee, "authentication_required")
        except PaymentRefused as err:
            return self._late_fee_declined(effect, booking, fee, str(err))
        return self._late_fee_charged(effect, booking, fee, charge, card)

    def _late_fee_charged(
        self,
        effect: OutboxEffect,
        booking: Booking,
        fee: Money,
        charge: OffSessionCharge,
        card: tuple[str, str],
    ) -> FollowUp:
        """The provider took the charge on: recorded, and the renter told only once the money
        moved. One still processing is recorded ``created``, with its check timer: its event
        or its check, whichever comes first, finishes it."""
        now = self.clock.now()
        customer, method = card
        status = PaymentStatus.PAID if charge.paid else PaymentStatus.CREATED

        async def record(conn: UnitOfWork) -> Outcome:
            payment, created = await Payment.get_or_create(
                idempotency_key=effect.idempotency_key,
                defaults={
                    "booking": booking,
                    "provider": self.payments.name,
                    "purpose": PaymentPurpose.LATE_FEE,
                    "amount_cents": fee.minor,
                    "currency": fee.currency,
                    "status": status,
                    "provider_ref": charge.intent,
                    "details": {
                        "payment_intent": charge.intent,
                        "customer": customer,
                        "payment_method": method,
                    },
                },
                using_db=conn,
            )
            if not created:
                return Outcome()
            if charge.paid:
                return await tell_late_fee_charged(self.notifier, conn, booking, fee, now)
            subject = f"booking:{booking.reference}"
            return Outcome(
                timers=[late_fee_check(payment, now, now)],
                audits=[Audit("system", "late_fee.processing", subject, {"amount": fee.minor})],
            )

        return record

    async def _saved_card_of(self, booking: Booking) -> tuple[str, str] | None:
        """The customer and card saved at the booking's checkout: as the deposit recorded
        them, or as the rental's payment did, or read back from its payment intent."""
        intent = ""
        for payment in await Payment.filter(
            booking_id=booking.id,
            purpose__in=(PaymentPurpose.DEPOSIT, PaymentPurpose.RENTAL),
        ).order_by("id"):
            customer = str(payment.details.get("customer") or "")
            method = str(payment.details.get("payment_method") or "")
            if customer and method:
                return customer, method
            if payment.purpose == PaymentPurpose.RENTAL and payment.status == PaymentStatus.PAID:
                intent = intent or str(payment.details.get("payment_intent") or "")
        if not intent:
            return None
        return await self.payments.saved_card(intent)

    def _late_fee_link(
        self, effect: OutboxEffect, booking: Booking, fee: Money, why: str
    ) -> FollowUp:
        """The renter pays the fee on-session: a Checkout (purpose ``late_fee``), whose link
        the checkout's own effect sends once Stripe created it."""
        now = self.clock.now()
        payload = self._checkout_payload(
            booking, booking.asset, PaymentPurpose.LATE_FEE, fee.minor, now + LATE_FEE_LINK_ROOM
        )
        staged = late_fee_link(link_key(effect.idempotency_key), payload, booking, fee, why)

        async def stage(conn: UnitOfWork) -> Outcome:
            return staged

        return stage

    def _late_fee_declined(
        self, effect: OutboxEffect, booking: Booking, fee: Money, why: str
    ) -> FollowUp:
        now = self.clock.now()

        async def record(conn: UnitOfWork) -> Outcome:
            _, created = await Payment.get_or_create(
                idempotency_key=effect.idempotency_key,
                defaults={
                    "booking": booking,
                    "provider": self.payments.name,
                    "purpose": PaymentPurpose.LATE_FEE,
                    "amount_cents": fee.minor,
                    "currency": fee.currency,
                    "status": PaymentStatus.DECLINED,
                },
                using_db=conn,
            )
            if not created:
                return Outcome()
            await tell_fee(self.notifier, conn, booking, "journey.late_fee_failed", fee, now)
            outcome = Outcome(
                alerts=[
                    Alert(
                        AlertKind.LATE_FEE_FAILED,
                        f"late-fee:{booking.reference}",
                        "ops.late_fee_failed",
                        {"booking": booking.reference, "amount": fee.format("en"), "why": why},
                    )
                ],
                audits=[
                    Audit(
                        "system",
                        "late_fee.declined",
                        f"booking:{booking.reference}",
                        {"amount": fee.minor},
                    )
                ],
            )
            return outcome + await receipt_unless_deposit(self.notifier, conn, booking, now)

        return record
