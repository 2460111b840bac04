"""The PaymentProvider and IdentityProvider ports and the normalized payment events flows see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from storage.money import Money


class PaymentError(Exception):
    """Root of payment-provider errors."""


class PaymentUnavailable(PaymentError):
    """The provider cannot be reached right now (network, timeout, 5xx): retry later."""


class PaymentRefused(PaymentError):
    """The provider refused the request; retrying it unchanged will not help."""


class PaymentNeedsAuthentication(PaymentRefused):
    """An off-session charge the card's bank wants the renter to authenticate (3-D Secure):
    the renter has to pay on-session, through a payment link."""


@dataclass(frozen=True)
class CheckoutRequest:
    booking_reference: str
    amount: Money
    description: str
    expires_at: datetime  # 30 minutes to 24 hours ahead
    success_url: str
    cancel_url: str
    idempotency_key: str
    #: A deposit is authorised (held) on the card and captured only if an operator claims it.
    hold: bool = False
    #: Save the card for an off-session charge later (rentals longer than a hold can live).
    save_card: bool = False
    locale: str = "auto"
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OffSessionCharge:
    """A saved card charged with the renter away, as the provider took it on. ``paid``: the
    money moved. Otherwise it is still processing (it may yet fail): its outcome comes later
    as a ``PAYMENT_SUCCEEDED`` or ``PAYMENT_FAILED`` event about ``intent``, or is read back
    with ``charge_state``, whichever is first."""

    intent: str
    paid: bool


class ChargeState(StrEnum):
    """Where an off-session charge stands, as the provider has it now (read back, not told by
    an event): money moved, nothing moved and nothing will (declined, cancelled, or wanting
    the renter), or neither yet."""

    PAID = "paid"
    FAILED = "failed"
    PROCESSING = "processing"


@dataclass(frozen=True)
class Checkout:
    session_id: str
    url: str
    expires_at: datetime


class PaymentEventKind(StrEnum):
    CHECKOUT_PAID = "checkout_paid"
    CHECKOUT_EXPIRED = "checkout_expired"
    HOLD_PLACED = "hold_placed"  # an authorisation can now be captured
    HOLD_CANCELLED = "hold_cancelled"
    REFUNDED = "refunded"
    PAYMENT_FAILED = "payment_failed"
    #: A payment intent's money moved (an off-session charge that was still processing).
    PAYMENT_SUCCEEDED = "payment_succeeded"
    IDENTITY_VERIFIED = "identity_verified"
    IDENTITY_NEEDS_INPUT = "identity_needs_input"
    OTHER = "other"


@dataclass(frozen=True)
class PaymentEvent:
    """A provider event, normalized: what happened to which booking."""

    event_id: str
    kind: PaymentEventKind
    occurred_at: datetime
    booking_reference: str | None
    object_id: str  # the session, payment intent, charge or verification session id
    #: In ``currency``'s minor units as Keyturn stores them (``Money.minor``), whatever the
    #: provider's own units are.
    amount: int | None = None
    currency: str | None = None
    payment_intent: str | None = None
    customer: str | None = None
    payment_method: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class IdentitySession:
    session_id: str
    url: str


class PaymentProvider(Protocol):
    name: str

    async def create_checkout(self, request: CheckoutRequest) -> Checkout: ...

    async def expire_checkout(self, session_id: str) -> bool:
        """Close an open checkout. True when it is closed unpaid (now or before); False when
        the renter completed it, in which case its paid event has come or is on its way."""
        ...

    async def capture_hold(self, payment_intent: str, amount: Money | None, key: str) -> None: ...

    async def release_hold(self, payment_intent: str, key: str) -> None: ...

    async def refund(self, payment_intent: str, amount: Money | None, key: str) -> str: ...

    async def saved_card(self, payment_intent: str) -> tuple[str, str] | None:
        """The customer and card a paid intent saved for later, if it saved one."""
        ...

    async def place_hold(self, customer: str, payment_method: str, amount: Money, key: str) -> str:
        """Authorise ``amount`` on a saved card without capturing it; returns the intent id."""
        ...

    async def charge_saved_card(
        self,
        customer: str,
        payment_method: str,
        amount: Money,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> OffSessionCharge:
        """Charge a saved card with the renter away: paid, or still processing. A card that
        needs the renter is ``PaymentNeedsAuthentication``, a declined one ``PaymentRefused``.
        ``metadata`` travels with the charge (and its events): what it is for, whose it is."""
        ...

    async def charge_state(self, payment_intent: str) -> ChargeState:
        """Where an off-session charge stands now, read from the provider: its outcome does
        not depend on an event arriving, or arriving after the charge was recorded."""
        ...


class IdentityProvider(Protocol):
    name: str

    async def start_verification(
        self, renter_reference: str, return_url: str, key: str
    ) -> IdentitySession: ...
