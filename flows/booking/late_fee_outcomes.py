"""What a late fee's outcome records and tells, whichever path learnt it: the off-session
charge's own answer, or the provider's later event about a charge that was still processing.

The renter hears "charged" only once the money moved. A charge still processing is recorded
``created``: its ``PAYMENT_SUCCEEDED`` event makes it paid (and tells the renter), its
``PAYMENT_FAILED`` event makes it declined and brings the renter on-session with a payment
link, as a card that wants authentication does. A rental without a deposit has its receipt
once the fee's outcome is known; one with a deposit, when the deposit's is.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.booking.common import CHECKOUT_EFFECT
from flows.booking.receipt import tell_receipt
from flows.effects import Audit, Effect, Outcome
from flows.notify import Notifier
from storage.models import Booking, Payment
from storage.money import Money
from storage.payments import PaymentStatus, move_payment


async def tell_late_fee_charged(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, fee: Money, now: datetime
) -> Outcome:
    """The fee's money moved: the renter is told, and has their receipt unless a deposit's
    fate is still to come."""
    await notifier.tell(
        conn,
        booking.renter_id,
        "journey.late_fee_charged",
        now=now,
        kind="receipt",
        params=lambda language: {
            "reference": booking.reference,
            "amount": fee.format(language),
        },
    )
    outcome = Outcome(
        audits=[
            Audit(
                "system", "late_fee.charged", f"booking:{booking.reference}", {"amount": fee.minor}
            )
        ]
    )
    return outcome + await receipt_unless_deposit(notifier, conn, booking, now)


async def receipt_unless_deposit(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, now: datetime
) -> Outcome:
    """A rental without a deposit has its receipt once the late fee's outcome is known;
    one with a deposit has it when the deposit's fate is."""
    if booking.deposit_cents > 0:
        return Outcome()
    return await tell_receipt(notifier, conn, booking.id, now)


def late_fee_link(
    key: str, payload: dict[str, object], booking: Booking, fee: Money, why: str
) -> Outcome:
    """Stage the fee's Checkout (purpose ``late_fee``); its own effect sends the link once
    the provider created it."""
    return Outcome(
        effects=[Effect(CHECKOUT_EFFECT, key, payload)],
        audits=[
            Audit(
                "system",
                "late_fee.link",
                f"booking:{booking.reference}",
                {"amount": fee.minor, "why": why},
            )
        ],
    )


def link_key(charge: Payment | str) -> str:
    """The fee link's effect key, from the late fee's own key (its effect's, its payment's)."""
    key = charge if isinstance(charge, str) else charge.idempotency_key
    return f"{key}:link"


async def late_fee_settled(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, charge: Payment, now: datetime
) -> Outcome:
    """The provider says a charge that was processing moved the money. Nothing for any other
    late fee (one paid already, a link's checkout: its own event tells)."""
    if not await move_payment(conn, charge.id, to=PaymentStatus.PAID, was=PaymentStatus.CREATED):
        return Outcome()
    fee = Money(charge.amount_cents, charge.currency)
    return await tell_late_fee_charged(notifier, conn, booking, fee, now)


async def late_fee_charge_failed(
    conn: BaseDBAsyncClient, booking: Booking, charge: Payment, payload: dict[str, object]
) -> Outcome | None:
    """The provider says a charge that was processing failed: nothing was charged, and the
    renter pays through a link (``payload``, the checkout's). None when the event is not about
    such a charge."""
    if not await move_payment(
        conn, charge.id, to=PaymentStatus.DECLINED, was=PaymentStatus.CREATED
    ):
        return None
    fee = Money(charge.amount_cents, charge.currency)
    return late_fee_link(link_key(charge), payload, booking, fee, "processing_failed")
