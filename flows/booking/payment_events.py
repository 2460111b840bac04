"""A payment provider's events, applied once in the webhook route's unit of work."""

from __future__ import annotations

import logging
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.booking.common import HOLD_EFFECT, LATE_FEE_LINK_ROOM
from flows.booking.deposit_claims import claim_charge_failed, claim_settled
from flows.booking.identity_review import IdentityReview
from flows.booking.late_fee_outcomes import (
    late_fee_charge_failed,
    late_fee_settled,
    receipt_unless_deposit,
    tell_fee,
)
from flows.booking.lifecycle import ExtensionSuperseded
from flows.bookings import extended_range, is_free
from flows.effects import Alert, Audit, CancelTimer, Effect, Outcome
from flows.payment_match import OWNED_KINDS, disagreement, own_payment
from flows.payments import PaymentEvent, PaymentEventKind
from storage.kinds import AlertKind
from storage.models import Asset, Booking, BookingState, Extension, Payment
from storage.money import Money
from storage.payments import PaymentPurpose, PaymentStatus, move_payment
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


class PaymentEvents(IdentityReview):
    """What a payment provider's event changes, in its webhook route's unit of work."""

    async def payment_event(
        self, conn: UnitOfWork, provider: str, event: PaymentEvent, now: datetime
    ) -> Outcome:
        """What a payment provider's event changes; events may come in any order. Its runner
        (the webhook route) records the event's id in the same unit of work, so it applies once."""
        if event.kind in (
            PaymentEventKind.IDENTITY_VERIFIED,
            PaymentEventKind.IDENTITY_NEEDS_INPUT,
        ):
            return await self._identity_event(conn, event, now)
        if event.kind not in OWNED_KINDS:
            return Outcome()
        matched = await own_payment(conn, provider, event)
        if matched is None:
            return await self._not_ours(conn, event)
        why = disagreement(event, matched)
        if why is not None:
            return payment_mismatch(event, matched.booking.reference, why)
        payment, booking = matched.payment, matched.booking
        if event.kind == PaymentEventKind.CHECKOUT_PAID:
            return await self._paid(conn, booking, payment, event, now)
        if event.kind == PaymentEventKind.CHECKOUT_EXPIRED:
            if payment.purpose == PaymentPurpose.EXTENSION:
                return Outcome()
            if payment.purpose == PaymentPurpose.LATE_FEE:
                return await self._late_fee_link_expired(conn, booking, payment, now)
            return await self._expire(conn, booking, now)
        if event.kind == PaymentEventKind.REFUNDED:
            return await _refunded(conn, provider, booking, event)
        if event.kind == PaymentEventKind.HOLD_PLACED:
            # Only a deposit still waiting for its authorisation: this event may arrive late,
            # after the hold was released or captured, and must not bring it back.
            if payment.purpose == PaymentPurpose.DEPOSIT:
                await move_payment(conn, payment.id, to=PaymentStatus.HELD)
            return Outcome()
        if payment.purpose == PaymentPurpose.LATE_FEE:
            settled = await self._late_fee_event(conn, booking, payment, event, now)
            if settled is not None:
                return settled
        if payment.purpose == PaymentPurpose.CLAIM:
            settled = await self._claim_event(conn, booking, payment, event, now)
            if settled is not None:
                return settled
        if event.kind == PaymentEventKind.PAYMENT_SUCCEEDED:
            return Outcome()  # a checkout's or a hold's intent: their own events count
        return Outcome(
            alerts=[
                Alert(
                    AlertKind.PAYMENT_FAILED,
                    f"payment-failed:{booking.reference}",
                    "ops.payment_failed",
                    {"booking": booking.reference},
                )
            ]
        )

    async def _late_fee_event(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        payment: Payment,
        event: PaymentEvent,
        now: datetime,
    ) -> Outcome | None:
        """The outcome of a late fee charged off-session while it was still processing; None
        for an event about any other late fee (a link's checkout, one settled already)."""
        if event.kind not in (PaymentEventKind.PAYMENT_SUCCEEDED, PaymentEventKind.PAYMENT_FAILED):
            return None
        paid = event.kind == PaymentEventKind.PAYMENT_SUCCEEDED
        settled = await self._late_fee_outcome(conn, booking, payment, paid=paid, now=now)
        if settled is None and payment.provider_ref == event.payment_intent:
            return Outcome()  # its own processing charge, decided already by its check
        return settled

    async def _late_fee_outcome(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        payment: Payment,
        *,
        paid: bool,
        now: datetime,
    ) -> Outcome | None:
        """A processing late fee succeeded (``paid``) or failed, as its event or its check
        learnt; None when it is not processing (any more): the other one settled it first."""
        if payment.status != PaymentStatus.CREATED:
            return None
        if paid:
            return await late_fee_settled(self.notifier, conn, booking, payment, now)
        asset = await Asset.filter(id=booking.asset_id).using_db(conn).get()
        payload = self._checkout_payload(
            booking, asset, PaymentPurpose.LATE_FEE, payment.amount_cents, now + LATE_FEE_LINK_ROOM
        )
        return await late_fee_charge_failed(conn, booking, payment, payload)

    async def _claim_event(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        payment: Payment,
        event: PaymentEvent,
        now: datetime,
    ) -> Outcome | None:
        """The outcome of a deposit claim charged off-session while it was still processing;
        None for an event about any other claim (one settled already)."""
        if event.kind == PaymentEventKind.PAYMENT_SUCCEEDED:
            return await claim_settled(self.notifier, conn, booking, payment, now)
        if event.kind == PaymentEventKind.PAYMENT_FAILED:
            return await claim_charge_failed(self.notifier, conn, booking, payment, now)
        return None

    async def _late_fee_paid(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        payment: Payment,
        now: datetime,
        *,
        receipt: bool = True,
    ) -> Outcome:
        """The renter paid a late fee through its link (their card wanted authentication).
        ``receipt``: False when the link's expiry sent it already (paid as it expired)."""
        fee = Money(payment.amount_cents, payment.currency)
        await tell_fee(self.notifier, conn, booking, "journey.late_fee_paid", fee, now)
        outcome = Outcome(
            audits=[Audit("payments", "late_fee.paid", f"booking:{booking.reference}")]
        )
        if not receipt:
            return outcome
        return outcome + await receipt_unless_deposit(self.notifier, conn, booking, now)

    async def _late_fee_link_expired(
        self, conn: BaseDBAsyncClient, booking: Booking, payment: Payment, now: datetime
    ) -> Outcome:
        """A late fee's payment link ran out unpaid: ops take it from here, and a rental
        without a deposit has its receipt (the fee not paid)."""
        if not await move_payment(
            conn, payment.id, to=PaymentStatus.EXPIRED, was=PaymentStatus.OPEN
        ):
            return Outcome()
        outcome = Outcome(
            alerts=[
                Alert(
                    AlertKind.LATE_FEE_FAILED,
                    f"late-fee:{booking.reference}",
                    "ops.late_fee_unpaid",
                    {"booking": booking.reference},
                )
            ]
        )
        return outcome + await receipt_unless_deposit(self.notifier, conn, booking, now)

    async def _not_ours(self, conn: BaseDBAsyncClient, event: PaymentEvent) -> Outcome:
        """An event about a session or intent Keyturn did not create changes nothing. Ops hear
        of it when it names one of Keyturn's bookings: someone paid (or refunded) elsewhere on
        the account in a booking's name. Other sales on the same account are none of ours; so
        are intents whose record is still being written (a deposit hold's, a failed card's, a
        late fee's outcome come before its processing charge was recorded: that charge's
        check reads the outcome back)."""
        reference = event.booking_reference
        known = (
            reference is not None
            and await Booking.filter(reference=reference).using_db(conn).exists()
        )
        quiet = event.kind in (
            PaymentEventKind.HOLD_PLACED,
            PaymentEventKind.PAYMENT_FAILED,
            PaymentEventKind.PAYMENT_SUCCEEDED,  # a checkout's intent before its session's event
        )
        if not known or quiet or reference is None:
            log.info("payment event %s is about no payment Keyturn made", event.kind)
            return Outcome()
        return payment_mismatch(event, reference, "Keyturn did not create this payment")

    async def _paid(
        self,
        conn: BaseDBAsyncClient,
        booking: Booking,
        payment: Payment,
        event: PaymentEvent,
        now: datetime,
    ) -> Outcome:
        details = {
            "payment_intent": event.payment_intent,
            "customer": event.customer,
            "payment_method": event.payment_method,
        }
        paid = await move_payment(
            conn, payment.id, to=PaymentStatus.PAID, details={**payment.details, **details}
        )
        if not paid:  # paid already (a second event for it): nothing more to do
            return Outcome()
        if payment.purpose == PaymentPurpose.LATE_FEE:
            expired = payment.status == PaymentStatus.EXPIRED
            return await self._late_fee_paid(conn, booking, payment, now, receipt=not expired)
        if payment.purpose == PaymentPurpose.EXTENSION:
            extension = (
                await Extension.filter(id=int(str(payment.details.get("extension"))))
                .using_db(conn)
                .get()
            )
            still_free = await is_free(
                booking.asset_id,
                extended_range(booking, extension.new_end_at),
                ignore=booking.id,
                conn=conn,
            )
            if not still_free or booking.state not in (
                BookingState.CONFIRMED,
                BookingState.ACTIVE,
            ):
                return self._refund_late(booking, payment, "extension_taken")
            if booking.end_at != extension.old_end_at:
                # Quoted from an end the booking no longer has (another extension was paid
                # first): applied now it would move the end back, so it is given back.
                return self._refund_late(booking, payment, "extension_superseded")
            try:
                return await self.apply_extension(conn, extension)
            except ExtensionSuperseded:
                # Another extension was applied since this one was read (at the same moment).
                return self._refund_late(booking, payment, "extension_superseded")
        if booking.state != BookingState.AWAITING_PAYMENT:
            # Paid after the hold expired or was cancelled: give the money back.
            return self._refund_late(booking, payment, "paid_after_expiry")
        await Booking.filter(id=booking.id).using_db(conn).update(hold_expires_at=None)
        outcome = Outcome(
            timers=[CancelTimer(f"hold:{booking.reference}")],
            audits=[Audit("payments", "booking.paid", f"booking:{booking.reference}")],
        )
        if booking.deposit_cents:
            outcome.effects.append(
                Effect(HOLD_EFFECT, f"deposit:{booking.reference}", {"booking": booking.id})
            )
        return outcome + (await self._checks_before_rental(conn, booking, now))


async def _refunded(
    conn: BaseDBAsyncClient, provider: str, booking: Booking, event: PaymentEvent
) -> Outcome:
    await Payment.create(
        booking=booking,
        provider=provider,
        purpose=PaymentPurpose.REFUND,
        amount_cents=event.amount or 0,
        currency=booking.currency,
        status=PaymentStatus.REFUNDED,
        idempotency_key=f"refund-event:{event.event_id}",
        using_db=conn,
    )
    return Outcome(audits=[Audit("payments", "payment.refunded", f"booking:{booking.reference}")])


def payment_mismatch(event: PaymentEvent, reference: str, why: str) -> Outcome:
    """A payment event that moves nothing, for ops to look at."""
    return Outcome(
        alerts=[
            Alert(
                AlertKind.PAYMENT_MISMATCH,
                f"payment-mismatch:{event.object_id or event.event_id}",
                "ops.payment_mismatch",
                {
                    "booking": reference,
                    "event": event.kind.value,
                    "object": event.object_id,
                    "why": why,
                },
            )
        ],
        audits=[
            Audit(
                "payments",
                "payment.event_refused",
                f"booking:{reference}",
                {"event": event.event_id, "kind": event.kind.value, "why": why},
            )
        ],
    )
