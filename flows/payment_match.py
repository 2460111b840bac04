"""Which of Keyturn's stored payments a provider event is about, and whether it agrees with it.

A checkout's ``client_reference_id`` and ``metadata`` are set by whoever creates it: a Payment
Link elsewhere on the same Stripe account takes ``?client_reference_id=`` from anyone. So an
event moves a booking only when its session or payment intent is one Keyturn stored, for the
amount and currency Keyturn asked; the booking reference it carries is a hint for finding the
stored payment, never the proof.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.payments import PaymentEvent, PaymentEventKind
from storage.models import Booking, Payment

#: Events that change a booking or its money: they must be about a stored payment.
OWNED_KINDS = frozenset(
    {
        PaymentEventKind.CHECKOUT_PAID,
        PaymentEventKind.CHECKOUT_EXPIRED,
        PaymentEventKind.REFUNDED,
        PaymentEventKind.HOLD_PLACED,
        PaymentEventKind.PAYMENT_FAILED,
        PaymentEventKind.PAYMENT_SUCCEEDED,
    }
)
#: Events whose amount is the whole checkout's: it must be what Keyturn asked for.
_WHOLE_AMOUNT = frozenset({PaymentEventKind.CHECKOUT_PAID, PaymentEventKind.CHECKOUT_EXPIRED})

#: Payments charged off-session on the card on file, whose intent is their own.
_OFF_SESSION_PURPOSES = frozenset({"late_fee", "claim"})

#: Payments that are a checkout the renter pays on.
_CHECKOUT_PURPOSES = frozenset({"rental", "extension", "late_fee"})


@dataclass(frozen=True)
class Matched:
    payment: Payment
    booking: Booking


async def own_payment(
    conn: BaseDBAsyncClient, provider: str, event: PaymentEvent
) -> Matched | None:
    """The stored payment whose session or payment intent the event is about, if any."""
    ids = [value for value in (event.object_id, event.payment_intent) if value]
    if not ids:
        return None
    payment = (
        await Payment.filter(provider=provider, provider_ref__in=ids)
        .using_db(conn)
        .order_by("id")
        .first()
    )
    if payment is None and event.payment_intent and event.booking_reference:
        # A paid checkout's intent (and a claimed deposit's charge) is kept in the details of
        # the booking's payment: the event's booking reference says which booking to look in.
        hinted = await Booking.filter(reference=event.booking_reference).using_db(conn).first()
        if hinted is not None:
            for candidate in (
                await Payment.filter(booking_id=hinted.id, provider=provider)
                .using_db(conn)
                .order_by("id")
            ):
                details = candidate.details
                if event.payment_intent in (details.get("payment_intent"), details.get("charge")):
                    payment = candidate
                    break
    if payment is None:
        return None
    booking = await Booking.filter(id=payment.booking_id).using_db(conn).get()
    return Matched(payment, booking)


def disagreement(event: PaymentEvent, matched: Matched) -> str | None:
    """Why the event cannot be about ``matched`` as it says, or None when it agrees."""
    payment, booking = matched.payment, matched.booking
    if event.booking_reference and event.booking_reference != booking.reference:
        return f"it names booking {event.booking_reference}, the payment is {booking.reference}'s"
    if event.kind in _WHOLE_AMOUNT and (
        payment.provider_ref != event.object_id or payment.purpose not in _CHECKOUT_PURPOSES
    ):
        return "it is not about one of Keyturn's checkouts"
    expected = payment.currency.upper()
    money_moved = event.kind in _WHOLE_AMOUNT or event.kind is PaymentEventKind.REFUNDED
    if money_moved and (event.currency is None or event.currency.upper() != expected):
        return f"currency {(event.currency or '-').upper()}, expected {expected}"
    if event.kind in _WHOLE_AMOUNT and event.amount != payment.amount_cents:
        return f"amount {_amount(event.amount)}, expected {payment.amount_cents} (smallest unit)"
    if (
        event.kind is PaymentEventKind.PAYMENT_SUCCEEDED
        and payment.purpose in _OFF_SESSION_PURPOSES
        and payment.provider_ref == event.object_id
        and (
            event.currency is None
            or event.currency.upper() != expected
            or event.amount != payment.amount_cents
        )
    ):
        # A late fee's or a claim's own off-session intent: the money it moved is what
        # Keyturn asked for.
        moved = f"{_amount(event.amount)} {(event.currency or '-').upper()}"
        return f"{moved} moved, expected {payment.amount_cents} {expected} (smallest unit)"
    if event.kind is PaymentEventKind.REFUNDED and (
        event.amount is None or not 0 <= event.amount <= payment.amount_cents
    ):
        return f"refunded {_amount(event.amount)}, paid {payment.amount_cents} (smallest unit)"
    return None


def _amount(value: int | None) -> str:
    return "-" if value is None else str(value)
