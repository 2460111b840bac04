"""The booking journey: from a chosen item to a held, paid, checked and confirmed booking, its
PIN, its changes and its end.

Every part is a handler: a dialog step, a payment event, an identity decision, a timer or an
effect's follow-up takes the unit of work its runner opened and returns an Outcome; nothing
here opens a transaction. ``Journey`` composes the parts; the composition root wires its
executors and timers by kind (``journey_executors``, ``journey_timers``).
"""

from flows.booking.common import (
    CHECKOUT_EFFECT,
    DELIVER_PIN_TIMER,
    LIVE_BOOKING,
    REFUND_EFFECT,
    RELEASE_EFFECT,
    JourneySettings,
    MediaEraser,
    MediaFetcher,
)
from flows.booking.deposit_claims import ClaimRefused, ClaimTaken, DepositNotClaimable
from flows.booking.journey import Journey, journey_executors, journey_timers
from flows.booking.pin_message import one_line
from flows.booking.reads import BookingReads, DatabaseBookingReads
from storage.transitions import IllegalTransition

__all__ = [
    "CHECKOUT_EFFECT",
    "DELIVER_PIN_TIMER",
    "LIVE_BOOKING",
    "REFUND_EFFECT",
    "RELEASE_EFFECT",
    "BookingReads",
    "ClaimRefused",
    "ClaimTaken",
    "DatabaseBookingReads",
    "DepositNotClaimable",
    "IllegalTransition",
    "Journey",
    "JourneySettings",
    "MediaEraser",
    "MediaFetcher",
    "journey_executors",
    "journey_timers",
    "one_line",
]
