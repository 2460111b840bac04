"""Stripe behind the PaymentProvider and IdentityProvider ports, and Stripe's webhooks normalized.

- ``stripe_api``: the one ``StripeClient`` every call goes through, with a timeout and the
  caller's idempotency key, and Stripe's errors turned into ``PaymentUnavailable`` (try again)
  or ``PaymentRefused``; no message carries the API key.
- ``stripe_payments``: ``StripePayments``, Checkout for payments and deposit holds,
  PaymentIntents to capture, release and refund, and charges to a card saved at checkout.
- ``stripe_identity``: ``StripeIdentity``, Stripe Identity document checks.
- ``stripe_events``: ``parse_stripe_event``, a signed webhook delivery as a ``PaymentEvent``.
"""

from __future__ import annotations

from bot.payments.stripe_api import CAPTURE_METADATA_KEY
from bot.payments.stripe_events import (
    HANDLED_EVENTS,
    StripeWebhookInvalid,
    normalize_event,
    parse_stripe_event,
)
from bot.payments.stripe_identity import StripeIdentity
from bot.payments.stripe_payments import StripePayments

__all__ = [
    "CAPTURE_METADATA_KEY",
    "HANDLED_EVENTS",
    "StripeIdentity",
    "StripePayments",
    "StripeWebhookInvalid",
    "normalize_event",
    "parse_stripe_event",
]
