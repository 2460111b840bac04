"""A payment's status and purpose, and every legal move of its status, each one guarded UPDATE.

A rental or extension checkout is ``open`` until paid or expired; a deposit is ``held`` (or
only ``card_on_file`` for a rental too long for a hold) until released or claimed. Refunds and
claims are rows of their own, recorded in their final status; so is a late fee charged
off-session (``paid`` or ``declined``), unless its charge is still processing (``created``
until the provider's event says), while one paid through a link is a checkout; a claim
charged off-session likewise (``created`` while processing, ``declined`` if it failed).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import Payment
from storage.transitions import Transitions


class PaymentStatus(StrEnum):
    CREATED = "created"
    OPEN = "open"
    PAID = "paid"
    EXPIRED = "expired"
    HELD = "held"
    CARD_ON_FILE = "card_on_file"
    RELEASED = "released"
    CLAIMED = "claimed"
    REFUNDED = "refunded"
    #: An off-session charge the card's bank refused (a late fee): nothing was charged.
    DECLINED = "declined"


class PaymentPurpose(StrEnum):
    RENTAL = "rental"
    EXTENSION = "extension"
    DEPOSIT = "deposit"
    REFUND = "refund"
    CLAIM = "claim"
    #: A late return's fee: charged off-session on the saved card, or paid through a link.
    LATE_FEE = "late_fee"


P = PaymentStatus
PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    #: Also a late fee charged off-session whose charge is still processing: the provider's
    #: event makes it paid, or declined (nothing was charged).
    P.CREATED: frozenset({P.OPEN, P.PAID, P.EXPIRED, P.HELD, P.DECLINED}),
    P.OPEN: frozenset({P.PAID, P.EXPIRED, P.HELD}),
    #: A hold about to lapse before the return's damage review ends is cancelled and the card
    #: kept on file instead (a claim then charges it off-session).
    P.HELD: frozenset({P.RELEASED, P.CLAIMED, P.CARD_ON_FILE}),
    #: Released when the damage review ends with no claim: the card is no longer charged.
    P.CARD_ON_FILE: frozenset({P.CLAIMED, P.RELEASED}),
    P.PAID: frozenset(),
    #: The provider's word that it was paid stands over Keyturn's record of its expiry (a
    #: session completed as it was being expired); the booking's state decides what follows.
    P.EXPIRED: frozenset({P.PAID}),
    P.RELEASED: frozenset(),
    #: A claim charged off-session whose charge failed after processing kept nothing: the
    #: card is on file again.
    P.CLAIMED: frozenset({P.CARD_ON_FILE}),
    P.REFUNDED: frozenset(),
    P.DECLINED: frozenset(),
}
PAYMENTS = Transitions(Payment, "status", PAYMENT_TRANSITIONS, "payment")
#: A deposit that may still be claimed.
CLAIMABLE = (P.HELD, P.CARD_ON_FILE)


async def move_payment(
    conn: BaseDBAsyncClient,
    payment_id: int,
    *,
    to: PaymentStatus,
    was: PaymentStatus | None = None,
    **fields: Any,
) -> bool:
    """Move a payment to ``to`` from any of its predecessors (or only from ``was``); False
    when it was in none (paid meanwhile, released already)."""
    return await PAYMENTS.move(conn, payment_id, to=to, was=was, **fields)
