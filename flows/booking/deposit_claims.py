"""An operator's deposit claim, whichever way it is asked (``/claim``, a return report's
"Damage?" button, ``keyturn deposits claim``): one flow records it and tells the renter.

The claim is the hold captured or, where the hold lapsed into the card on file, the card
charged off-session; the renter hears "kept for damage" only once the money moved. A charge
still processing at the provider is recorded ``created`` (the deposit already ``claimed``, so it
is neither claimed twice nor released): its ``PAYMENT_SUCCEEDED`` event makes it paid and tells
the renter; its ``PAYMENT_FAILED`` event makes it declined, puts the deposit back on file and
tells ops. The receipt waits for a claim still processing, and follows its outcome once the
damage review is over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.booking.handover_asks import report_settled
from flows.booking.receipt import tell_receipt
from flows.effects import Alert, Audit, FollowUp, Outcome
from flows.notify import Notifier
from flows.returns import damage_review_key
from storage.kinds import AlertKind
from storage.models import Booking, Payment, Timer, TimerState
from storage.money import Money
from storage.payments import CLAIMABLE, PaymentPurpose, PaymentStatus, move_payment


class ClaimRefused(ValueError):
    """The payment provider refused an operator's deposit claim; nothing was charged."""


class DepositNotClaimable(LookupError):
    """The booking's deposit cannot be claimed: ``status`` is ``released``, ``claimed``
    (already) or ``none`` (there is no deposit). Nothing was charged."""

    def __init__(self, reference: str, status: str) -> None:
        self.reference = reference
        self.status = status
        why = {
            "released": f"the deposit of {reference} was released already",
            "claimed": f"the deposit of {reference} is claimed already",
        }.get(status, f"booking {reference} has no deposit to claim")
        super().__init__(f"{why}: nothing was claimed")


@dataclass(frozen=True)
class ClaimTaken:
    """A claim the provider took on: ``paid`` once the money moved; otherwise its charge is
    still processing and its outcome comes as an event."""

    amount: Money
    paid: bool


def claim_key(reference: str) -> str:
    """One key per deposit, whatever the amount: a claim whose record was lost, claimed again
    (or two claims at once), is the same charge, never a second one."""
    return f"claim:{reference}"


async def claimable(booking: Booking, amount: Money | None) -> tuple[Payment, Money]:
    """The booking's deposit that can still be claimed, and how much of it is claimed (all of
    it when no amount is given); ``DepositNotClaimable`` when there is none (released, claimed
    already), ``ValueError`` when the amount does not fit."""
    deposit = (
        await Payment.filter(booking_id=booking.id, purpose=PaymentPurpose.DEPOSIT)
        .order_by("-id")
        .first()
    )
    if deposit is None or deposit.status not in CLAIMABLE:
        status = "none" if deposit is None else str(deposit.status)
        raise DepositNotClaimable(booking.reference, status)
    held = Money(deposit.amount_cents, deposit.currency)
    claimed = held if amount is None else amount
    if claimed.currency != held.currency or not 0 < claimed.minor <= held.minor:
        raise ValueError(
            f"a claim is more than nothing and at most the deposit, {held.format('en')}"
        )
    return deposit, claimed


def record_claim(
    notifier: Notifier,
    deposit: Payment,
    charge: str,
    taken: ClaimTaken,
    *,
    actor: str,
    off_session: bool,
    now: datetime,
) -> FollowUp:
    """The follow-up that records a claim the provider took on (its caller, a runner, commits
    it): the deposit claimed, the claim's row (its off-session intent as its provider
    reference, so the intent's event finds it), and the renter told once the money moved."""

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        booking = await Booking.filter(id=deposit.booking_id).using_db(conn).get()
        reference = booking.reference
        if not await move_payment(conn, deposit.id, to=PaymentStatus.CLAIMED):
            # Claimed (or released) meanwhile: this charge is that claim's, recorded by it.
            raise LookupError(f"the deposit of {reference} was claimed or released meanwhile")
        await Payment.get_or_create(
            idempotency_key=claim_key(reference),
            defaults={
                "booking": booking,
                "provider": deposit.provider,
                "purpose": PaymentPurpose.CLAIM,
                "amount_cents": taken.amount.minor,
                "currency": taken.amount.currency,
                "status": PaymentStatus.PAID if taken.paid else PaymentStatus.CREATED,
                "provider_ref": charge if off_session else None,
                "details": {"charge": charge, "actor": actor},
            },
            using_db=conn,
        )
        subject, details = f"booking:{reference}", {"amount": taken.amount.minor}
        if not taken.paid:
            return Outcome(audits=[Audit(actor, "deposit.claim_processing", subject, details)])
        await tell_claimed(notifier, conn, booking, taken.amount, now)
        return Outcome(
            audits=[Audit(actor, "deposit.claimed", subject, details)],
            effects=[report_settled(booking.id, reference)],
        )

    return record


async def tell_claimed(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, amount: Money, now: datetime
) -> None:
    await notifier.tell(
        conn,
        booking.renter_id,
        "journey.deposit_claimed",
        now=now,
        kind="receipt",
        params=lambda language: {"reference": booking.reference, "amount": amount.format(language)},
    )


async def claim_pending(conn: BaseDBAsyncClient, booking_id: int) -> bool:
    """Whether a claim of the booking's deposit is still processing at the provider."""
    return await (
        Payment.filter(
            booking_id=booking_id, purpose=PaymentPurpose.CLAIM, status=PaymentStatus.CREATED
        )
        .using_db(conn)
        .exists()
    )


async def claim_settled(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, claim: Payment, now: datetime
) -> Outcome | None:
    """The provider says a claim's charge that was processing moved the money: the renter is
    told, and has the receipt if the damage review is over. None when it was no such charge."""
    if not await move_payment(conn, claim.id, to=PaymentStatus.PAID, was=PaymentStatus.CREATED):
        return None
    amount = Money(claim.amount_cents, claim.currency)
    await tell_claimed(notifier, conn, booking, amount, now)
    outcome = Outcome(
        audits=[
            Audit(
                "payments",
                "deposit.claimed",
                f"booking:{booking.reference}",
                {"amount": amount.minor},
            )
        ],
        effects=[report_settled(booking.id, booking.reference)],
    )
    return outcome + await _receipt_if_reviewed(notifier, conn, booking, now)


async def claim_charge_failed(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, claim: Payment, now: datetime
) -> Outcome | None:
    """The provider says a claim's charge that was processing failed: nothing was kept, the
    deposit is back on file (released if the damage review is over, with the receipt) and ops
    hear of it; the renter was never told of the claim. None when it was no such charge."""
    if not await move_payment(conn, claim.id, to=PaymentStatus.DECLINED, was=PaymentStatus.CREATED):
        return None
    reference = booking.reference
    deposit = (
        await Payment.filter(
            booking_id=booking.id, purpose=PaymentPurpose.DEPOSIT, status=PaymentStatus.CLAIMED
        )
        .using_db(conn)
        .first()
    )
    if deposit is not None:
        await move_payment(
            conn, deposit.id, to=PaymentStatus.CARD_ON_FILE, was=PaymentStatus.CLAIMED
        )
    amount = Money(claim.amount_cents, claim.currency)
    outcome = Outcome(
        alerts=[
            Alert(
                AlertKind.PAYMENT_FAILED,
                f"claim-failed:{reference}",
                "ops.claim_failed",
                {"booking": reference, "amount": amount.format("en")},
            )
        ],
        audits=[Audit("payments", "deposit.claim_failed", f"booking:{reference}")],
    )
    if deposit is None or not await _reviewed(conn, booking):
        return outcome
    if await move_payment(
        conn, deposit.id, to=PaymentStatus.RELEASED, was=PaymentStatus.CARD_ON_FILE
    ):
        outcome.audits.append(Audit("system", "deposit.released", f"booking:{reference}"))
    return outcome + await tell_receipt(notifier, conn, booking.id, now)


async def _reviewed(conn: BaseDBAsyncClient, booking: Booking) -> bool:
    """Whether the return's damage review is over (its receipt waited for the claim)."""
    if booking.returned_at is None:
        return False
    pending = Timer.filter(key=damage_review_key(booking.reference), state=TimerState.PENDING)
    return not await pending.using_db(conn).exists()


async def _receipt_if_reviewed(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, now: datetime
) -> Outcome:
    if not await _reviewed(conn, booking):
        return Outcome()
    return await tell_receipt(notifier, conn, booking.id, now)
