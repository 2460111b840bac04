"""The deposit follows the return: released when the damage review after a confirmed return
ends with no claim (never by the clock alone), kept claimed when damage was claimed, moved to
the card on file when its hold would lapse first; the receipt goes out once its fate is known
(a claim still processing at the provider: once its outcome is).

A timer handler reads without a transaction; what it changes is a write the timer runner
commits, and every outside call (releasing a hold) is an effect whose follow-up records the
provider's answer and only then tells the renter.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flows.access import LIVE_STATES
from flows.booking.common import (
    HOLD_LAPSE_TIMER,
    HOLD_LIFETIME,
    RELEASE_EFFECT,
    at,
    hold_lapse_key,
)
from flows.booking.deposit_claims import claim_pending
from flows.booking.late_fee_checks import LateFeeChecks
from flows.booking.receipt import tell_receipt
from flows.effects import Audit, Effect, FollowUp, Outcome, SetTimer
from flows.returns import DAMAGE_REVIEW_TIMER, damage_review_key
from flows.timers import TimerFired
from storage.models import (
    AccessCode,
    AccessCodeState,
    Booking,
    OutboxEffect,
    Payment,
    Timer,
    TimerState,
)
from storage.money import Money
from storage.payments import PaymentPurpose, PaymentStatus, move_payment
from storage.uow import UnitOfWork

#: A damage review due this close to a hold's lapse does not count on releasing it in time.
REVIEW_MARGIN = timedelta(hours=1)
#: A hold whose damage review ends before it lapses is looked at again this long after it.
RECHECK_AFTER_REVIEW = timedelta(minutes=5)


class Settlement(LateFeeChecks):
    """The deposit's fate after the rental, and the receipt."""

    async def on_damage_review(self, event: TimerFired) -> Outcome:
        """The damage review after a confirmed return is over: a held deposit is released
        (the receipt follows the provider's answer); a claimed one stays claimed."""
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        later = await self._review_again_at(booking)
        if later is not None:
            key = damage_review_key(booking.reference)
            return Outcome(
                timers=[SetTimer(DAMAGE_REVIEW_TIMER, later, key, {"booking": booking.id})]
            )
        deposit = await _deposit(booking.id)
        if deposit is not None and deposit.status == PaymentStatus.HELD:
            return Outcome(
                effects=[
                    Effect(
                        RELEASE_EFFECT,
                        f"release:{booking.reference}",
                        {"booking": booking.id, "receipt": True},
                    )
                ]
            )
        now = self.clock.now()

        async def settle(conn: UnitOfWork) -> Outcome:
            outcome = Outcome()
            if deposit is not None and await move_payment(
                conn, deposit.id, to=PaymentStatus.RELEASED, was=PaymentStatus.CARD_ON_FILE
            ):
                # Nothing is held at the provider: the card on file is simply not charged.
                outcome.audits.append(
                    Audit("system", "deposit.released", f"booking:{booking.reference}")
                )
            elif deposit is None and booking.deposit_cents <= 0:
                return outcome  # no deposit: the receipt went out at the return
            elif await claim_pending(conn, booking.id):
                return outcome  # the receipt follows the claim's outcome
            return outcome + await tell_receipt(self.notifier, conn, booking.id, now)

        return Outcome(writes=[settle])

    async def _review_again_at(self, booking: Booking) -> datetime | None:
        """When the damage review must end instead, as the renter's codes still open: a code
        extended past it (its new end, plus the review), or one Keyturn asked the lock to
        remove that it has not yet confirmed removed (an offline keypad: a whole review from
        now, looked at again then). None when no code opens any more."""
        now = self.clock.now()
        codes = await AccessCode.filter(
            booking_id=booking.id,
            state__in=(*LIVE_STATES, AccessCodeState.REMOVING),
            ends_at__gt=now,
        )
        if not codes:
            return None
        review = self.settings.returns.damage_review
        live = [code.ends_at for code in codes if code.state != AccessCodeState.REMOVING]
        removing = len(live) < len(codes)
        return max([*(end + review for end in live), *([now + review] if removing else [])])

    async def on_deposit_hold_lapse(self, event: TimerFired) -> Outcome:
        """A hold is a day from lapsing. Released or claimed already: nothing to do. Its
        damage review ends before it lapses: looked at again after the review. Otherwise the
        hold is cancelled and the card kept on file (a claim charges it off-session)."""
        booking = await Booking.get(id=int(str(event.payload["booking"])))
        deposit = await Payment.filter(
            booking_id=booking.id, purpose=PaymentPurpose.DEPOSIT, status=PaymentStatus.HELD
        ).first()
        if deposit is None:
            return Outcome()
        held_at = deposit.details.get("held_at")
        placed = at(held_at) if held_at else deposit.created_at
        lapses_at = placed + HOLD_LIFETIME
        review = await Timer.filter(
            key=damage_review_key(booking.reference), state=TimerState.PENDING
        ).first()
        if review is not None and review.due_at + RECHECK_AFTER_REVIEW < lapses_at - REVIEW_MARGIN:
            return Outcome(
                timers=[
                    SetTimer(
                        HOLD_LAPSE_TIMER,
                        review.due_at + RECHECK_AFTER_REVIEW,
                        hold_lapse_key(booking.reference),
                        {"booking": booking.id},
                    )
                ]
            )
        return Outcome(
            effects=[
                Effect(
                    RELEASE_EFFECT,
                    hold_lapse_key(booking.reference),
                    {"booking": booking.id, "keep_card": True},
                )
            ]
        )

    async def execute_release_deposit(self, effect: OutboxEffect) -> FollowUp:
        """Cancel the booking's deposit holds. ``keep_card``: the card stays on file for a
        claim (a hold about to lapse); ``receipt``: the renter's receipt follows."""
        booking_id = int(str(effect.payload["booking"]))
        keep_card = bool(effect.payload.get("keep_card"))
        released = []
        for deposit in await Payment.filter(
            booking_id=booking_id, purpose=PaymentPurpose.DEPOSIT, status=PaymentStatus.HELD
        ):
            if deposit.provider_ref:
                await self.payments.release_hold(deposit.provider_ref, effect.idempotency_key)
            released.append(deposit)
        now = self.clock.now()

        async def record(conn: UnitOfWork) -> Outcome:
            booking = await Booking.filter(id=booking_id).using_db(conn).get()
            subject = f"booking:{booking.reference}"
            outcome = Outcome()
            to = PaymentStatus.CARD_ON_FILE if keep_card else PaymentStatus.RELEASED
            for deposit in released:
                if not await move_payment(conn, deposit.id, to=to, was=PaymentStatus.HELD):
                    continue  # claimed meanwhile: its claim is what happened to it
                action = "deposit.card_on_file" if keep_card else "deposit.released"
                outcome.audits.append(Audit("system", action, subject))
                if keep_card:
                    await self._tell_card_on_file(conn, booking, deposit, now)
            if effect.payload.get("receipt"):
                # The review is over: a deposit whose hold lapsed into the card on file
                # meanwhile is released too (nothing is held at the provider).
                on_file = await Payment.filter(
                    booking_id=booking_id,
                    purpose=PaymentPurpose.DEPOSIT,
                    status=PaymentStatus.CARD_ON_FILE,
                ).using_db(conn)
                for deposit in on_file:
                    if await move_payment(
                        conn, deposit.id, to=PaymentStatus.RELEASED, was=PaymentStatus.CARD_ON_FILE
                    ):
                        outcome.audits.append(Audit("system", "deposit.released", subject))
                outcome = outcome + await tell_receipt(self.notifier, conn, booking_id, now)
            return outcome

        return record

    async def _tell_card_on_file(
        self, conn: UnitOfWork, booking: Booking, deposit: Payment, now: datetime
    ) -> None:
        amount = Money(deposit.amount_cents, deposit.currency)
        await self.notifier.tell(
            conn,
            booking.renter_id,
            "journey.deposit_card_on_file",
            now=now,
            kind="receipt",
            params=lambda language: {
                "reference": booking.reference,
                "deposit": amount.format(language),
            },
        )

    async def execute_receipt(self, effect: OutboxEffect) -> FollowUp:
        """The receipt of a rental without a deposit, staged at its confirmed return."""
        booking_id = int(str(effect.payload["booking"]))
        now = self.clock.now()

        async def tell(conn: UnitOfWork) -> Outcome:
            return await tell_receipt(self.notifier, conn, booking_id, now)

        return tell


async def _deposit(booking_id: int) -> Payment | None:
    return (
        await Payment.filter(booking_id=booking_id, purpose=PaymentPurpose.DEPOSIT)
        .order_by("-id")
        .first()
    )
