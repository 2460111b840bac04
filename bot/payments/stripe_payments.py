"""Stripe behind the PaymentProvider port: Checkout for payments and deposit holds,
PaymentIntents to capture, release and refund, and charges to a card saved at checkout.

Calls that find the work already done (expiring a session that expired or was paid, releasing a
released hold, capturing a captured one) succeed, so that an outbox retry is harmless.

A hold is a Checkout Session whose PaymentIntent has ``capture_method=manual``; the session
carries ``metadata.keyturn_capture="manual"`` (``CAPTURE_METADATA_KEY``) so that its completion
reads as authorised (see ``stripe_events``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import stripe

from bot.payments.stripe_api import CAPTURE_METADATA_KEY, StripeApi, id_of, idempotent
from flows.payments import (
    ChargeState,
    Checkout,
    CheckoutRequest,
    OffSessionCharge,
    PaymentNeedsAuthentication,
    PaymentProvider,
    PaymentRefused,
)
from storage.money import Money

if TYPE_CHECKING:
    from stripe.params import (
        PaymentIntentCaptureParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
    )
    from stripe.params.checkout import (
        SessionCreateParams,
        SessionCreateParamsPaymentIntentData,
    )

#: Stripe accepts a Checkout expiry from 30 minutes to 24 hours after the session is created.
CHECKOUT_MIN_LIFETIME: Final = timedelta(minutes=30)
CHECKOUT_MAX_LIFETIME: Final = timedelta(hours=24)
#: An expiry asked for "30 minutes from now" reaches Stripe a little later (the outbox runs the
#: effect after the step that asked for it, and may retry it). Up to this much under the minimum
#: is lifted to the minimum; further under is a caller's mistake.
CHECKOUT_EXPIRY_SLIP: Final = timedelta(minutes=5)
#: Head room so Stripe, whose clock runs on while the request travels, still sees the bounds met.
_EXPIRY_MARGIN: Final = timedelta(seconds=60)
#: Stripe's error code for an off-session confirm the card's bank wants authenticated.
AUTHENTICATION_REQUIRED: Final = "authentication_required"
#: An off-session charge's intent statuses after which no money moved and none will.
_NOTHING_CHARGED: Final = frozenset({"requires_payment_method", "requires_action", "canceled"})


class StripePayments(StripeApi):
    """Stripe Checkout for payments and deposit holds, PaymentIntents for capture and refunds."""

    name = "stripe"

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        params = self.checkout_params(request)
        session = await self._call(
            "checkout.sessions.create",
            lambda: self._client.v1.checkout.sessions.create_async(
                params, idempotent(request.idempotency_key)
            ),
        )
        if not session.url:
            raise PaymentRefused("stripe checkout.sessions.create: the session has no url")
        return Checkout(
            session_id=session.id,
            url=session.url,
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        )

    def checkout_params(self, request: CheckoutRequest) -> SessionCreateParams:
        """What ``create_checkout`` sends; raises ValueError for a request Stripe would refuse."""
        if request.amount.minor <= 0:
            raise ValueError("amount must be positive")
        if not request.booking_reference:
            raise ValueError("booking_reference is required")
        metadata = {**request.metadata, "booking": request.booking_reference}
        if request.hold:
            metadata[CAPTURE_METADATA_KEY] = "manual"
        intent_data: SessionCreateParamsPaymentIntentData = {"metadata": dict(metadata)}
        if request.hold:
            intent_data["capture_method"] = "manual"
        if request.save_card:
            intent_data["setup_future_usage"] = "off_session"
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.amount.currency.lower(),
                        "unit_amount": request.amount.to_stripe(),
                        "product_data": {"name": request.description},
                    },
                    "quantity": 1,
                }
            ],
            "client_reference_id": request.booking_reference,
            "metadata": metadata,
            "payment_intent_data": intent_data,
            "expires_at": self._checkout_expiry(request.expires_at),
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "locale": request.locale,
        }
        if request.save_card:
            params["customer_creation"] = "always"
        return params

    def _checkout_expiry(self, expires_at: datetime) -> int:
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        now = self._now()
        earliest = now + CHECKOUT_MIN_LIFETIME
        latest = now + CHECKOUT_MAX_LIFETIME
        if expires_at < earliest - CHECKOUT_EXPIRY_SLIP:
            raise ValueError("expires_at must be at least 30 minutes ahead")
        if expires_at > latest:
            raise ValueError("expires_at must be at most 24 hours ahead")
        bounded = min(max(expires_at, earliest + _EXPIRY_MARGIN), latest - _EXPIRY_MARGIN)
        return int(bounded.timestamp())

    async def expire_checkout(self, session_id: str) -> bool:
        """Close an open session; one that already expired or completed is left as it is.
        False when the renter completed it."""
        sessions = self._client.v1.checkout.sessions
        try:
            await self._call(
                "checkout.sessions.expire",
                lambda: sessions.expire_async(
                    session_id, options=idempotent(f"keyturn-expire-{session_id}")
                ),
            )
        except PaymentRefused as refused:
            if not isinstance(refused.__cause__, stripe.InvalidRequestError):
                raise
            session = await self._call(
                "checkout.sessions.retrieve", lambda: sessions.retrieve_async(session_id)
            )
            if session.status not in ("expired", "complete"):
                raise
            return session.status == "expired"
        return True

    async def capture_hold(self, payment_intent: str, amount: Money | None, key: str) -> None:
        """Capture an authorised hold, all of it or ``amount``; a hold already captured is done."""
        params: PaymentIntentCaptureParams = {}
        if amount is not None:
            if amount.minor <= 0:
                raise ValueError("amount must be positive")
            params["amount_to_capture"] = amount.to_stripe()
        intents = self._client.v1.payment_intents
        try:
            await self._call(
                "payment_intents.capture",
                lambda: intents.capture_async(payment_intent, params, idempotent(key)),
            )
        except PaymentRefused as refused:
            if not isinstance(refused.__cause__, stripe.InvalidRequestError):
                raise
            intent = await self._call(
                "payment_intents.retrieve", lambda: intents.retrieve_async(payment_intent)
            )
            if not (intent.status == "succeeded" and intent.capture_method == "manual"):
                raise

    async def release_hold(self, payment_intent: str, key: str) -> None:
        """Cancel the authorisation; one already cancelled is done."""
        intents = self._client.v1.payment_intents
        try:
            await self._call(
                "payment_intents.cancel",
                lambda: intents.cancel_async(payment_intent, options=idempotent(key)),
            )
        except PaymentRefused as refused:
            if not isinstance(refused.__cause__, stripe.InvalidRequestError):
                raise
            intent = await self._call(
                "payment_intents.retrieve", lambda: intents.retrieve_async(payment_intent)
            )
            if intent.status != "canceled":
                raise

    async def refund(self, payment_intent: str, amount: Money | None, key: str) -> str:
        """Refund ``amount`` (everything not yet refunded when None); returns the refund id."""
        params: RefundCreateParams = {"payment_intent": payment_intent}
        if amount is not None:
            if amount.minor <= 0:
                raise ValueError("amount must be positive")
            params["amount"] = amount.to_stripe()
        refund = await self._call(
            "refunds.create",
            lambda: self._client.v1.refunds.create_async(params, idempotent(key)),
        )
        return refund.id

    async def saved_card(self, payment_intent: str) -> tuple[str, str] | None:
        """The customer and card a paid checkout saved (``setup_future_usage``), if any.

        ``checkout.session.completed`` names the customer but not the card, so the intent is
        read back before a deposit hold is placed on the same card.
        """
        intent = await self._call(
            "payment_intents.retrieve",
            lambda: self._client.v1.payment_intents.retrieve_async(payment_intent),
        )
        customer = id_of(intent.customer)
        method = id_of(intent.payment_method)
        if customer is None or method is None:
            return None
        return customer, method

    async def place_hold(self, customer: str, payment_method: str, amount: Money, key: str) -> str:
        """Authorise ``amount`` on a saved card without capturing it; returns the intent id.

        For a rental longer than a hold lives: the card saved at checkout gets a fresh
        authorisation. Declined or needing the renter: ``PaymentRefused``. Only
        ``requires_capture`` is a hold: an intent still ``processing`` has authorised nothing
        that could be captured yet, so it is refused too (its id in the message, for ops).
        """
        intent_id, status = await self._off_session_intent(
            "place_hold", customer, payment_method, amount, key, manual=True
        )
        if status != "requires_capture":
            raise PaymentRefused(
                f"stripe payment_intents.create (place_hold): {intent_id} is {status}"
            )
        return intent_id

    async def charge_saved_card(
        self,
        customer: str,
        payment_method: str,
        amount: Money,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> OffSessionCharge:
        """Charge a card saved at checkout with the renter away.

        Paid when the intent comes back ``succeeded``; one that comes back ``processing`` has
        moved no money yet and may still fail: ``payment_intent.succeeded`` or
        ``payment_intent.payment_failed`` tells later. A card whose bank wants the renter to
        authenticate is ``PaymentNeedsAuthentication``: Stripe answers an off-session confirm
        with 402, error code ``authentication_required`` (the intent left
        ``requires_payment_method``; an intent that comes back ``requires_action`` means the
        same). Bring the renter back on-session with a checkout. A declined card is
        ``PaymentRefused``. ``metadata`` is set on the intent, so its events (and the
        Dashboard) name what it is for.
        """
        intent_id, status = await self._off_session_intent(
            "charge_saved_card", customer, payment_method, amount, key, metadata=metadata
        )
        if status not in ("succeeded", "processing"):
            raise PaymentRefused(
                f"stripe payment_intents.create (charge_saved_card): {intent_id} is {status}"
            )
        return OffSessionCharge(intent_id, paid=status == "succeeded")

    async def charge_state(self, payment_intent: str) -> ChargeState:
        """The intent's status now (``GET /v1/payment_intents/{id}``). ``succeeded`` is paid;
        back at ``requires_payment_method`` (Stripe's answer to a charge that failed while
        processing), ``requires_action`` (the bank wants the renter) or ``canceled``, nothing
        was charged; anything else (``processing``) is not decided yet."""
        intent = await self._call(
            "payment_intents.retrieve",
            lambda: self._client.v1.payment_intents.retrieve_async(payment_intent),
        )
        if intent.status == "succeeded":
            return ChargeState.PAID
        if intent.status in _NOTHING_CHARGED:
            return ChargeState.FAILED
        return ChargeState.PROCESSING

    async def _off_session_intent(
        self,
        operation: str,
        customer: str,
        payment_method: str,
        amount: Money,
        key: str,
        *,
        manual: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[str, str]:
        """Create and confirm the intent; its id and status (the caller says which it takes)."""
        if amount.minor <= 0:
            raise ValueError("amount must be positive")
        params: PaymentIntentCreateParams = {
            "amount": amount.to_stripe(),
            "currency": amount.currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "off_session": True,
            "confirm": True,
        }
        if manual:
            params["capture_method"] = "manual"
        if metadata:
            params["metadata"] = dict(metadata)
        try:
            intent = await self._call(
                f"payment_intents.create ({operation})",
                lambda: self._client.v1.payment_intents.create_async(params, idempotent(key)),
            )
        except PaymentRefused as refused:
            cause = refused.__cause__
            if isinstance(cause, stripe.CardError) and cause.code == AUTHENTICATION_REQUIRED:
                raise PaymentNeedsAuthentication(str(refused)) from cause
            raise
        if intent.status == "requires_action":
            raise PaymentNeedsAuthentication(
                f"stripe payment_intents.create ({operation}): {intent.id} needs the renter"
            )
        return intent.id, intent.status


if TYPE_CHECKING:

    def _is_payment_provider(provider: StripePayments) -> PaymentProvider:
        return provider
