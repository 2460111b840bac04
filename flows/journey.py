"""The booking journey now lives in ``flows.booking``; this module re-exports its public face
for the modules that still import it from here.

``Journey`` here adds the two entry points the ops desk (flows/ops.py) still calls under their
old shapes, until it calls the new ones: ``decide_identity`` (which commits a decision in a
transaction of its own; the handler is ``review_identity``, given the runner's unit of work)
and ``_apply_extension`` (now ``apply_extension``). Both go when the ops desk has moved.
"""

from __future__ import annotations

from tortoise.transactions import in_transaction

from flows.booking import (
    CHECKOUT_EFFECT,
    DELIVER_PIN_TIMER,
    LIVE_BOOKING,
    REFUND_EFFECT,
    RELEASE_EFFECT,
    IllegalTransition,
    JourneySettings,
    MediaEraser,
    MediaFetcher,
    journey_executors,
    journey_timers,
)
from flows.booking import Journey as BookingJourney
from flows.staging import stage_outcome


class Journey(BookingJourney):
    #: The old name, until flows/ops.py calls ``apply_extension``.
    _apply_extension = BookingJourney.apply_extension

    async def decide_identity(
        self, check_id: int, *, approved: bool, reviewer: str, reason: str = ""
    ) -> bool:
        """The old shape of ``review_identity``: an operator's decision, committed here."""
        now = self.clock.now()
        async with in_transaction() as conn:
            outcome = await self.review_identity(
                conn, check_id, approved=approved, reviewer=reviewer, reason=reason, now=now
            )
            if outcome is None:
                return False
            await stage_outcome(conn, outcome, now)
        return True


__all__ = [
    "CHECKOUT_EFFECT",
    "DELIVER_PIN_TIMER",
    "LIVE_BOOKING",
    "REFUND_EFFECT",
    "RELEASE_EFFECT",
    "IllegalTransition",
    "Journey",
    "JourneySettings",
    "MediaEraser",
    "MediaFetcher",
    "journey_executors",
    "journey_timers",
]
