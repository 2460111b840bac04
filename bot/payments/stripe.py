"""Stripe behind the PaymentProvider and IdentityProvider ports, and Stripe's webhooks normalized.

Every call goes through ``StripeClient`` (``client.v1.*``, ``*_async`` methods) with its own
``asyncio.timeout`` and, for a POST, the caller's idempotency key, so an outbox retry never
charges twice. Calls that find the work already done (expiring a session that expired or was
paid, releasing a released hold, capturing a captured one) succeed, for the same reason.

The SDK's async HTTP client is chosen here rather than left to its import-time guess (httpx
when httpx and anyio happen to be importable, else aiohttp): aiohttp is ours anyway.
``StripeClient`` has no ``close``; ``close()`` below closes that HTTP client's session.

Stripe's errors become ours: a network failure, a timeout, 429, 409 or 5xx is
``PaymentUnavailable`` (try again later, with the same key); anything else Stripe refused
(card declined, invalid request, bad or restricted key, reused idempotency key) is
``PaymentRefused``. Neither message carries the API key.

A hold is a Checkout Session whose PaymentIntent has ``capture_method=manual``. Completing one
authorises the card without moving money, so ``checkout.session.completed`` says
``payment_status="unpaid"`` while its PaymentIntent is ``requires_capture``. An unpaid completed
session is otherwise a delayed payment method still on its way
(``checkout.session.async_payment_succeeded`` follows), so the session carries
``metadata.keyturn_capture="manual"`` to tell the two apart: a completed hold is
``CHECKOUT_PAID`` (with its ``payment_intent``), a delayed payment is ``OTHER`` until it succeeds.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
import stripe

from flows.payments import (
    ChargeState,
    Checkout,
    CheckoutRequest,
    IdentityProvider,
    IdentitySession,
    OffSessionCharge,
    PaymentEvent,
    PaymentEventKind,
    PaymentNeedsAuthentication,
    PaymentProvider,
    PaymentRefused,
    PaymentUnavailable,
)
from storage.money import Money, MoneyError

if TYPE_CHECKING:
    from stripe import RequestOptions
    from stripe.params import (
        PaymentIntentCaptureParams,
        PaymentIntentCreateParams,
        RefundCreateParams,
    )
    from stripe.params.checkout import (
        SessionCreateParams,
        SessionCreateParamsPaymentIntentData,
    )
    from stripe.params.identity import VerificationSessionCreateParams

_T = TypeVar("_T")

#: Stripe accepts a Checkout expiry from 30 minutes to 24 hours after the session is created.
CHECKOUT_MIN_LIFETIME: Final = timedelta(minutes=30)
CHECKOUT_MAX_LIFETIME: Final = timedelta(hours=24)
#: An expiry asked for "30 minutes from now" reaches Stripe a little later (the outbox runs the
#: effect after the step that asked for it, and may retry it). Up to this much under the minimum
#: is lifted to the minimum; further under is a caller's mistake.
CHECKOUT_EXPIRY_SLIP: Final = timedelta(minutes=5)
#: Head room so Stripe, whose clock runs on while the request travels, still sees the bounds met.
_EXPIRY_MARGIN: Final = timedelta(seconds=60)
#: Set on a hold's session so a completed-but-unpaid session reads as "authorised", not "pending".
CAPTURE_METADATA_KEY: Final = "keyturn_capture"
#: Stripe's error code for an off-session confirm the card's bank wants authenticated.
AUTHENTICATION_REQUIRED: Final = "authentication_required"
#: An off-session charge's intent statuses after which no money moved and none will.
_NOTHING_CHARGED: Final = frozenset({"requires_payment_method", "requires_action", "canceled"})

_SECRET_PATTERN: Final = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[A-Za-z0-9*]+|\bwhsec_\S+")

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


def _redact(text: str) -> str:
    return _SECRET_PATTERN.sub("[redacted]", text)


def _describe(operation: str, err: stripe.StripeError) -> str:
    parts = [f"stripe {operation}: {type(err).__name__}"]
    if err.http_status is not None:
        parts.append(f"HTTP {err.http_status}")
    if err.code:
        parts.append(f"code {err.code}")
    param = getattr(err, "param", None)
    if isinstance(param, str) and param:
        parts.append(f"param {param}")
    # Stripe's own text for these two quotes part of the key: leave it out.
    if isinstance(err, stripe.AuthenticationError):
        parts.append("the API key was not accepted")
    elif isinstance(err, stripe.PermissionError):
        parts.append("the API key may not do this")
    elif err.user_message:
        parts.append(_redact(str(err.user_message)))
    if err.request_id:
        parts.append(f"request {err.request_id}")
    return ", ".join(parts)


def _translate(operation: str, err: stripe.StripeError) -> PaymentUnavailable | PaymentRefused:
    message = _describe(operation, err)
    status = err.http_status
    if isinstance(err, stripe.APIConnectionError | stripe.RateLimitError):
        return PaymentUnavailable(message)
    if isinstance(err, stripe.APIError) and (status is None or status == 409):
        return PaymentUnavailable(message)  # no usable answer, or a lock timeout at Stripe
    if status is not None and status >= 500:
        return PaymentUnavailable(message)
    return PaymentRefused(message)


class _StripeApi:
    """One StripeClient with a timeout on every call and Stripe's errors turned into ours."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 2,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._timeout = timeout
        self._now = now or (lambda: datetime.now(UTC))
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"  # never the key

    async def close(self) -> None:
        """Close the HTTP session; the object is not used afterwards."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except TimeoutError:
            raise PaymentUnavailable(
                f"stripe {operation}: no answer within {self._timeout:g} s"
            ) from None
        except (stripe.AuthenticationError, stripe.PermissionError) as err:
            raise _translate(operation, err) from None
        except stripe.StripeError as err:
            raise _translate(operation, err) from err


def _options(key: str) -> RequestOptions:
    if not key:
        raise ValueError("an idempotency key is required")
    return {"idempotency_key": key}


class StripePayments(_StripeApi):
    """Stripe Checkout for payments and deposit holds, PaymentIntents for capture and refunds."""

    name = "stripe"

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        params = self.checkout_params(request)
        session = await self._call(
            "checkout.sessions.create",
            lambda: self._client.v1.checkout.sessions.create_async(
                params, _options(request.idempotency_key)
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
                    session_id, options=_options(f"keyturn-expire-{session_id}")
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
                lambda: intents.capture_async(payment_intent, params, _options(key)),
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
                lambda: intents.cancel_async(payment_intent, options=_options(key)),
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
            lambda: self._client.v1.refunds.create_async(params, _options(key)),
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
        customer = _id_of(intent.customer)
        method = _id_of(intent.payment_method)
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
                lambda: self._client.v1.payment_intents.create_async(params, _options(key)),
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


class StripeIdentity(_StripeApi):
    """Stripe Identity document checks; the outcome arrives as a webhook."""

    name = "stripe_identity"

    async def start_verification(
        self, renter_reference: str, return_url: str, key: str
    ) -> IdentitySession:
        params: VerificationSessionCreateParams = {
            "type": "document",
            "client_reference_id": renter_reference,
            "metadata": {"renter": renter_reference},
            "return_url": return_url,
        }
        session = await self._call(
            "identity.verification_sessions.create",
            lambda: self._client.v1.identity.verification_sessions.create_async(
                params, _options(key)
            ),
        )
        if not session.url:
            raise PaymentRefused("stripe identity.verification_sessions.create: no url")
        return IdentitySession(session_id=session.id, url=session.url)


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
        raise StripeWebhookInvalid(f"signature: {_redact(str(err.user_message))}") from None
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
        or not 0 < len(event_id) <= _LONGEST_ID
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
        reference = _text(metadata.get("renter")) or _text(obj.get("client_reference_id"))
    else:
        reference = _text(obj.get("client_reference_id")) or _text(metadata.get("booking"))

    amount: Any = None
    payment_intent: str | None = None
    payment_method: str | None = None
    if object_type == "checkout.session":
        amount = obj.get("amount_total")
        payment_intent = _id_of(obj.get("payment_intent"))
    elif object_type == "payment_intent":
        payment_intent = _text(obj.get("id"))
        payment_method = _id_of(obj.get("payment_method"))
        amount = (
            obj.get("amount_capturable")
            if event_type == "payment_intent.amount_capturable_updated"
            else obj.get("amount")
        )
    elif object_type == "charge":
        payment_intent = _id_of(obj.get("payment_intent"))
        payment_method = _id_of(obj.get("payment_method"))
        refunded = kind is PaymentEventKind.REFUNDED
        amount = obj.get("amount_refunded") if refunded else obj.get("amount")
    currency = _text(obj.get("currency"))
    return PaymentEvent(
        event_id=event_id,
        kind=kind,
        occurred_at=occurred_at,
        booking_reference=reference,
        object_id=_text(obj.get("id")) or "",
        amount=_keyturn_amount(amount, currency),
        currency=currency,
        payment_intent=payment_intent,
        customer=_id_of(obj.get("customer")),
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
    if status == "unpaid" and held and _id_of(session.get("payment_intent")):
        return PaymentEventKind.CHECKOUT_PAID  # authorised: the intent is requires_capture
    return PaymentEventKind.OTHER  # a delayed payment method: async_payment_* follows


#: Longer than any id or reference Keyturn stores (their columns hold 200 characters): such a
#: value names nothing of Keyturn's.
_LONGEST_ID = 200


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _LONGEST_ID else None


def _id_of(value: object) -> str | None:
    """An expandable field: an id, or the expanded object with one."""
    if isinstance(value, Mapping):
        return _text(value.get("id"))
    return _text(value)


if TYPE_CHECKING:

    def _is_payment_provider(provider: StripePayments) -> PaymentProvider:
        return provider

    def _is_identity_provider(provider: StripeIdentity) -> IdentityProvider:
        return provider
