"""Stripe's webhooks: the signature checked on the raw body and the event normalized into a
``PaymentEvent``.

A hold is a Checkout Session whose PaymentIntent has ``capture_method=manual``. Completing one
authorises the card without moving money, so ``checkout.session.completed`` says
``payment_status="unpaid"`` while its PaymentIntent is ``requires_capture``. An unpaid completed
session is otherwise a delayed payment method still on its way
(``checkout.session.async_payment_succeeded`` follows), so the session carries
``metadata.keyturn_capture="manual"`` to tell the two apart: a completed hold is
``CHECKOUT_PAID`` (with its ``payment_intent``), a delayed payment is ``OTHER`` until it succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import stripe

from bot.payments.stripe_api import CAPTURE_METADATA_KEY, LONGEST_ID, id_of, redact, text_of
from flows.payments import PaymentEvent, PaymentEventKind
from storage.money import Money, MoneyError

_EVENT_KINDS: Final[dict[str, PaymentEventKind]] = {
    "checkout.session.async_payment_succeeded": PaymentEventKind.CHECKOUT_PAID,
    "checkout.session.async_payment_failed": PaymentEventKind.PAYMENT_FAILED,
    "checkout.session.expired": PaymentEventKind.CHECKOUT_EXPIRED,
    "payment_intent.amount_capturable_updated": PaymentEventKind.HOLD_PLACED,
    "payment_intent.canceled": PaymentEventKind.HOLD_CANCELLED,
    "payment_intent.payment_failed": PaymentEventKind.PAYMENT_FAILED,
    "payment_intent.succeeded": PaymentEventKind.PAYMENT_SUCCEEDED,
    "charge.refunded": PaymentEventKind.REFUNDED,
    "identity.verification_session.verified": PaymentEventKind.IDENTITY_VERIFIED,
    "identity.verification_session.requires_input": PaymentEventKind.IDENTITY_NEEDS_INPUT,
}

#: Every event type Keyturn acts on: its webhook endpoint subscribes to these and no more.
HANDLED_EVENTS: Final = tuple(sorted({"checkout.session.completed", *_EVENT_KINDS}))


class StripeWebhookInvalid(ValueError):
    """Not a Stripe event signed with our secret within the tolerance: refuse it, change nothing."""


def parse_stripe_event(
    payload: bytes, signature_header: str | None, secret: str, *, tolerance: int = 300
) -> PaymentEvent:
    """Verify ``Stripe-Signature`` on the raw body and normalize the event.

    ``booking_reference`` is the session's ``client_reference_id`` or any object's
    ``metadata.booking``; for an identity event it is ``metadata.renter`` (the renter reference
    given to ``start_verification``). A replayed delivery older than ``tolerance`` seconds is
    refused; a repeated but fresh one is not (dedupe on ``event_id``).
    """
    if not secret:
        raise StripeWebhookInvalid("no webhook secret is configured")
    try:
        event = stripe.Webhook.construct_event(payload, signature_header, secret, tolerance)
        raw = event.to_dict()
    except stripe.SignatureVerificationError as err:
        raise StripeWebhookInvalid(f"signature: {redact(str(err.user_message))}") from None
    except (ValueError, TypeError, AttributeError, KeyError, RecursionError):  # nested too deep
        raise StripeWebhookInvalid("body is not a Stripe event") from None
    return normalize_event(raw)


def normalize_event(raw: Mapping[str, Any]) -> PaymentEvent:
    """A verified Stripe event (as a plain mapping) as a PaymentEvent.

    ``customer`` and ``payment_method`` are filled where the object carries them: a session
    has its customer (when one was created) but never the payment method, which first shows on
    the PaymentIntent's events (``payment_intent.amount_capturable_updated`` for a hold,
    ``payment_intent.succeeded`` otherwise).
    """
    event_id = raw.get("id")
    event_type = raw.get("type")
    created = raw.get("created")
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if (
        not isinstance(event_id, str)
        or not 0 < len(event_id) <= LONGEST_ID
        or not isinstance(event_type, str)
        or not isinstance(created, int)
        or not isinstance(obj, Mapping)
    ):
        raise StripeWebhookInvalid("body is not a Stripe event")
    try:
        occurred_at = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise StripeWebhookInvalid("the event's time is past the calendar") from None
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    kind = _EVENT_KINDS.get(event_type, PaymentEventKind.OTHER)
    object_type = obj.get("object")

    if event_type == "checkout.session.completed":
        kind = _completed_kind(obj, metadata)
    if object_type == "identity.verification_session":
        reference = text_of(metadata.get("renter")) or text_of(obj.get("client_reference_id"))
    else:
        reference = text_of(obj.get("client_reference_id")) or text_of(metadata.get("booking"))

    amount: Any = None
    payment_intent: str | None = None
    payment_method: str | None = None
    if object_type == "checkout.session":
        amount = obj.get("amount_total")
        payment_intent = id_of(obj.get("payment_intent"))
    elif object_type == "payment_intent":
        payment_intent = text_of(obj.get("id"))
        payment_method = id_of(obj.get("payment_method"))
        amount = (
            obj.get("amount_capturable")
            if event_type == "payment_intent.amount_capturable_updated"
            else obj.get("amount")
        )
    elif object_type == "charge":
        payment_intent = id_of(obj.get("payment_intent"))
        payment_method = id_of(obj.get("payment_method"))
        refunded = kind is PaymentEventKind.REFUNDED
        amount = obj.get("amount_refunded") if refunded else obj.get("amount")
    currency = text_of(obj.get("currency"))
    return PaymentEvent(
        event_id=event_id,
        kind=kind,
        occurred_at=occurred_at,
        booking_reference=reference,
        object_id=text_of(obj.get("id")) or "",
        amount=_keyturn_amount(amount, currency),
        currency=currency,
        payment_intent=payment_intent,
        customer=id_of(obj.get("customer")),
        payment_method=payment_method,
        raw=raw,
    )


def _keyturn_amount(amount: object, currency: str | None) -> int | None:
    """Stripe's minor units as Keyturn's (¥1,000 is 1000 in both, 1,000 kr is 100000 at
    Stripe); None for an amount that is not one or that Keyturn's units cannot hold."""
    if isinstance(amount, bool) or not isinstance(amount, int) or currency is None:
        return None
    try:
        return Money.from_stripe(amount, currency).minor
    except MoneyError:
        return None


def _completed_kind(session: Mapping[str, Any], metadata: Mapping[str, Any]) -> PaymentEventKind:
    status = session.get("payment_status")
    if status in ("paid", "no_payment_required"):
        return PaymentEventKind.CHECKOUT_PAID
    held = metadata.get(CAPTURE_METADATA_KEY) == "manual"
    if status == "unpaid" and held and id_of(session.get("payment_intent")):
        return PaymentEventKind.CHECKOUT_PAID  # authorised: the intent is requires_capture
    return PaymentEventKind.OTHER  # a delayed payment method: async_payment_* follows
