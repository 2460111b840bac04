"""The payment effects: each outside call runs outside any transaction, and what it learnt is
recorded by the follow-up the dispatcher commits with the effect's completion."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flows.booking.common import (
    CHECKOUT_EFFECT,
    CHECKOUT_LATE,
    CHECKOUT_ROOM,
    EXTENSION_CHECKOUT_ROOM,
    at,
    hold_lapse_timer,
    iso,
)
from flows.booking.deposit_claims import (
    ClaimRefused,
    ClaimTaken,
    claim_key,
    claimable,
    record_claim,
)
from flows.booking.payment_events import PaymentEvents
from flows.effects import Alert, Effect, FollowUp, Outcome
from flows.payments import CheckoutRequest, PaymentRefused
from storage.kinds import AlertKind
from storage.models import Booking, BookingState, Extension, OutboxEffect, Payment
from storage.money import Money
from storage.payments import PaymentPurpose, PaymentStatus, move_payment
from storage.uow import UnitOfWork

log = logging.getLogger(__name__)


class Executors(PaymentEvents):
    """The payment effects: outside calls, each with the follow-up that records it."""

    async def execute_checkout(self, effect: OutboxEffect) -> FollowUp | None:
        booking = await Booking.get(id=int(str(effect.payload["booking"]))).select_related("asset")
        now = self.clock.now()
        payload = await self._checkout_params(effect, booking)
        purpose, amount = str(payload["purpose"]), int(str(payload["amount"]))
        if purpose == PaymentPurpose.RENTAL and booking.state != BookingState.AWAITING_PAYMENT:
            return None
        expires = at(payload["expires_at"])
        if expires - now < CHECKOUT_ROOM + CHECKOUT_LATE and effect.attempts > 1:
            # Too late to be the same request if the first never reached Stripe: a fresh key
            # with fresh parameters, never a changed body under the old one.
            return self._checkout_again(effect, booking, now)
        checkout = await self.payments.create_checkout(
            CheckoutRequest(
                booking_reference=booking.reference,
                amount=Money(amount, str(payload["currency"])),
                description=str(payload["description"]),
                expires_at=expires,
                success_url=f"{self.settings.public_url}/paid/{booking.reference}",
                cancel_url=f"{self.settings.public_url}/paid/{booking.reference}?cancelled=1",
                idempotency_key=effect.idempotency_key,
                save_card=bool(payload["save_card"]),
                metadata={"purpose": purpose},
            )
        )

        async def record(conn: UnitOfWork) -> Outcome:
            recorded = Payment.filter(idempotency_key=effect.idempotency_key).using_db(conn)
            if await recorded.exists():
                return Outcome()  # an earlier attempt recorded it and sent the link, then stopped
            await Payment.create(
                idempotency_key=effect.idempotency_key,
                booking=booking,
                provider=self.payments.name,
                purpose=purpose,
                amount_cents=amount,
                currency=booking.currency,
                status=PaymentStatus.OPEN,
                provider_ref=checkout.session_id,
                details={"url": checkout.url, "extension": effect.payload.get("extension")},
                using_db=conn,
            )
            link_key = "journey.pay_link"
            if purpose == PaymentPurpose.LATE_FEE:
                link_key = "journey.late_fee_link"
            await self.notifier.tell(
                conn,
                booking.renter_id,
                link_key,
                now=now,
                kind="payment_link",
                params=lambda language: {
                    "url": checkout.url,
                    "amount": Money(amount, booking.currency).format(language),
                },
                template_variables={"1": booking.reference, "2": checkout.url},
            )
            return Outcome()

        return record

    async def _checkout_params(self, effect: OutboxEffect, booking: Booking) -> dict[str, object]:
        """The Checkout Session's parameters as staged; for an effect staged before they were
        fixed at staging, as they are computed now."""
        payload = dict(effect.payload)
        if "expires_at" in payload:
            return payload
        extension_id = payload.get("extension")
        purpose = PaymentPurpose.RENTAL if extension_id is None else PaymentPurpose.EXTENSION
        amount = booking.price_cents
        if extension_id is not None:
            amount = (await Extension.get(id=int(str(extension_id)))).price_cents
        room = booking.hold_expires_at if extension_id is None else None
        fixed = self._checkout_payload(
            booking, booking.asset, purpose, amount, room or effect.created_at
        )
        return {**fixed, **payload}

    def _checkout_again(self, effect: OutboxEffect, booking: Booking, now: datetime) -> FollowUp:
        """Stage the payment link again under a new key, its parameters fixed from now."""
        payload = dict(effect.payload)
        if payload.get("extension") is None:
            room_until = max(now + CHECKOUT_LATE, booking.hold_expires_at or now)
        else:
            room_until = now + EXTENSION_CHECKOUT_ROOM
        payload["expires_at"] = iso(room_until + CHECKOUT_ROOM)
        again = Effect(
            CHECKOUT_EFFECT, f"{effect.idempotency_key}:again:{effect.attempts}", payload
        )
        log.info("checkout for %s staged again under a new key", booking.reference)

        async def stage(conn: UnitOfWork) -> Outcome:
            return Outcome(effects=[again])

        return stage

    async def execute_refund(self, effect: OutboxEffect) -> None:
        booking = await Booking.get(id=int(str(effect.payload["booking"])))
        paid = Payment.filter(
            booking_id=booking.id,
            status=PaymentStatus.PAID,
            purpose__in=(PaymentPurpose.RENTAL, PaymentPurpose.EXTENSION),
        )
        if effect.payload.get("payment") is not None:
            # A refund of one payment (an extension refused after it was paid) gives back that
            # payment, not the booking's first ones.
            paid = paid.filter(id=int(str(effect.payload["payment"])))
        remaining = int(str(effect.payload.get("amount", 0)))
        for payment in await paid.order_by("id"):
            intent = str(payment.details.get("payment_intent") or "")
            if remaining <= 0 or not intent:
                continue
            part = min(remaining, payment.amount_cents)
            await self.payments.refund(
                intent, Money(part, payment.currency), f"{effect.idempotency_key}:{payment.id}"
            )
            remaining -= part

    async def execute_expire_checkout(self, effect: OutboxEffect) -> FollowUp:
        booking_id = int(str(effect.payload["booking"]))
        expired = []
        for payment in await Payment.filter(booking_id=booking_id, status=PaymentStatus.OPEN):
            if payment.provider_ref and not await self.payments.expire_checkout(
                payment.provider_ref
            ):
                # Completed at the last moment: its paid event refunds it (the hold is gone).
                continue
            expired.append(payment.id)

        async def record(conn: UnitOfWork) -> Outcome:
            for payment_id in expired:
                # Only while still open: a paid event handled meanwhile keeps its "paid".
                await move_payment(
                    conn, payment_id, to=PaymentStatus.EXPIRED, was=PaymentStatus.OPEN
                )
            return Outcome()

        return record

    async def execute_hold_deposit(self, effect: OutboxEffect) -> FollowUp | None:
        booking = await Booking.get(id=int(str(effect.payload["booking"])))
        rental = await Payment.filter(
            booking_id=booking.id, purpose=PaymentPurpose.RENTAL, status=PaymentStatus.PAID
        ).first()
        if rental is None or booking.deposit_cents <= 0:
            return None
        customer = str(rental.details.get("customer") or "")
        method = str(rental.details.get("payment_method") or "")
        intent_paid = str(rental.details.get("payment_intent") or "")
        if not (customer and method) and intent_paid:
            saved = await self.payments.saved_card(intent_paid)
            if saved is None:
                return self._deposit_not_held(booking, "no card was saved at checkout")
            customer, method = saved
        # A card authorisation lives about seven days; longer rentals keep the saved card and
        # charge it off-session only if an operator claims the deposit.
        intent: str | None = None
        status = PaymentStatus.CARD_ON_FILE
        if booking.end_at - self.clock.now() <= timedelta(days=6):
            try:
                intent = await self.payments.place_hold(
                    customer,
                    method,
                    Money(booking.deposit_cents, booking.currency),
                    effect.idempotency_key,
                )
            except PaymentRefused:
                return self._deposit_not_held(booking, "the card refused the hold")
            status = PaymentStatus.HELD
        now = self.clock.now()
        details = {"customer": customer, "payment_method": method}
        if status == PaymentStatus.HELD:
            details["held_at"] = iso(now)  # the authorisation's life runs from here

        async def record(conn: UnitOfWork) -> Outcome:
            _, created = await Payment.get_or_create(
                idempotency_key=effect.idempotency_key,
                defaults={
                    "booking": booking,
                    "provider": self.payments.name,
                    "purpose": PaymentPurpose.DEPOSIT,
                    "amount_cents": booking.deposit_cents,
                    "currency": booking.currency,
                    "status": status,
                    "provider_ref": intent,
                    "details": details,
                },
                using_db=conn,
            )
            outcome = await self._maybe_confirm(conn, booking, now)
            if created and status == PaymentStatus.HELD:
                outcome.timers.append(hold_lapse_timer(booking, now))
            return outcome

        return record

    async def claim_deposit(
        self, reference: str, amount: Money | None, *, actor: str
    ) -> tuple[ClaimTaken, FollowUp]:
        """An operator keeps (part of) a deposit: capture the hold, or charge the card on file
        (a rental too long for a hold, or a hold that lapsed). Returns what the provider took
        on, and the follow-up that records the claim and tells the renter once the money
        moved: its caller (a runner) commits it in a unit of work."""
        booking = await Booking.get(reference=reference)
        deposit, claimed = await claimable(booking, amount)
        # Asked again with another amount, the provider refuses the key reused with other
        # parameters: a claim is made once.
        key = claim_key(reference)
        hold = deposit.provider_ref if deposit.status == PaymentStatus.HELD else None
        try:
            if hold:
                await self.payments.capture_hold(hold, claimed, key)
                charge, paid = hold, True
            else:
                taken = await self.payments.charge_saved_card(
                    str(deposit.details.get("customer") or ""),
                    str(deposit.details.get("payment_method") or ""),
                    claimed,
                    key,
                )
                charge, paid = taken.intent, taken.paid
        except PaymentRefused as err:
            raise ClaimRefused(
                f"the deposit of {reference} was not claimed: {err} (a claim made before is"
                " claimed again only with the same amount)"
            ) from err
        result = ClaimTaken(claimed, paid)
        record = record_claim(
            self.notifier,
            deposit,
            charge,
            result,
            actor=actor,
            off_session=not hold,
            now=self.clock.now(),
        )
        return result, record

    def _deposit_not_held(self, booking: Booking, why: str) -> FollowUp:
        """Ops decide what happens to a booking whose deposit could not be held; the renter
        hears that their booking stands and that a person will be in touch."""
        now = self.clock.now()

        async def tell(conn: UnitOfWork) -> Outcome:
            await self.notifier.tell(
                conn,
                booking.renter_id,
                "journey.deposit_not_held",
                now=now,
                kind="receipt",
                params=lambda language: {
                    "reference": booking.reference,
                    "deposit": Money(booking.deposit_cents, booking.currency).format(language),
                },
            )
            return Outcome(
                alerts=[
                    Alert(
                        AlertKind.DEPOSIT_NOT_HELD,
                        f"deposit:{booking.reference}",
                        "ops.deposit_not_held",
                        {"booking": booking.reference, "why": why},
                    )
                ]
            )

        return tell
