"""Refunds as operators type them."""

from __future__ import annotations

import re

from flows.ops.answers import BadArguments, Refused
from storage.models import Booking
from storage.money import Money, MoneyError


def refund_cents(word: str, booking: Booking) -> int:
    """``full``, ``none`` or an amount in the booking's currency, in major units (``25.00``,
    ``1500`` yen) → its minor units."""
    lowered = word.lower()
    if lowered == "full":
        return booking.price_cents
    if lowered in ("none", "no", "0"):
        return 0
    if not re.fullmatch(r"-?[0-9.,]+", word):  # ASCII digits only: "NaN", "²" are no amount
        raise BadArguments()
    price = Money(booking.price_cents, booking.currency)
    try:
        refund = Money.parse(word, booking.currency)
    except MoneyError:
        refund = None
    if refund is None or refund > price:
        raise Refused(
            "ops.bad_refund",
            reference=booking.reference,
            amount=word,
            currency=price.currency,
            most=price.amount,
        )
    return refund.minor
