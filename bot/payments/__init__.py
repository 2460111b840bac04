"""Payment and identity providers behind the ports in ``flows.payments``.

Stripe is the real one: Checkout links for payments and deposit holds, PaymentIntents to capture,
release and refund, Stripe Identity for document checks, and its signed webhooks turned into
``PaymentEvent``s.
"""

from bot.payments.stripe import (
    StripeIdentity,
    StripePayments,
    StripeWebhookInvalid,
    parse_stripe_event,
)

__all__ = [
    "StripeIdentity",
    "StripePayments",
    "StripeWebhookInvalid",
    "parse_stripe_event",
]
