"""What a late fee's outcome records and tells, whichever path learnt it: the off-session
charge's own answer, or the provider's later event about a charge that was still processing.

The renter hears "charged" only once the money moved. A charge still processing is recorded
``created``: succeeded, it is made paid (and the renter told); failed, it is made declined and
the renter is brought on-session with a payment link, as a card that wants authentication is.
Either is learnt from the provider's event or from reading the charge back (its check timer,
set when it was recorded), whichever comes first: the move from ``created`` is guarded, so the
other changes nothing. The event may come before the charge is recorded, late, or never; the
check does not depend on it. A rental without a deposit has its receipt once the fee's outcome
is known; one with a deposit, when the deposit's is.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.booking.common import CHECKOUT_EFFECT, LATE_FEE_CHECK_TIMER, LATE_FEE_CHECKS, iso
from flows.booking.receipt import tell_receipt
from flows.effects import Audit, CancelTimer, Effect, Outcome, SetTimer
from flows.notify import Notifier
from storage.models import Booking, Payment
from storage.money import Money
from storage.payments import PaymentStatus, move_payment


async def tell_fee(
    notifier: Notifier,
    conn: BaseDBAsyncClient,
    booking: Booking,
    key: str,
    fee: Money,
    now: datetime,
) -> None:
    """Tell the renter what became of their late fee (``key``), with its amount."""
    await notifier.tell(
        conn,
        booking.renter_id,
        key,
        now=now,
        kind="receipt",
        params=lambda language: {"reference": booking.reference, "amount": fee.format(language)},
    )


async def tell_late_fee_charged(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, fee: Money, now: datetime
) -> Outcome:
    """The fee's money moved: the renter is told, and has their receipt unless a deposit's
    fate is still to come."""
    await tell_fee(notifier, conn, booking, "journey.late_fee_charged", fee, now)
    outcome = Outcome(
        audits=[
            Audit(
                "system", "late_fee.charged", f"booking:{booking.reference}", {"amount": fee.minor}
            )
        ]
    )
    return outcome + await receipt_unless_deposit(notifier, conn, booking, now)


async def receipt_unless_deposit(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, now: datetime
) -> Outcome:
    """A rental without a deposit has its receipt once the late fee's outcome is known;
    one with a deposit has it when the deposit's fate is."""
    if booking.deposit_cents > 0:
        return Outcome()
    return await tell_receipt(notifier, conn, booking.id, now)


def late_fee_link(
    key: str, payload: dict[str, object], booking: Booking, fee: Money, why: str
) -> Outcome:
    """Stage the fee's Checkout (purpose ``late_fee``); its own effect sends the link once
    the provider created it."""
    return Outcome(
        effects=[Effect(CHECKOUT_EFFECT, key, payload)],
        audits=[
            Audit(
                "system",
                "late_fee.link",
                f"booking:{booking.reference}",
                {"amount": fee.minor, "why": why},
            )
        ],
    )


def link_key(charge: Payment | str) -> str:
    """The fee link's effect key, from the late fee's own key (its effect's, its payment's)."""
    key = charge if isinstance(charge, str) else charge.idempotency_key
    return f"{key}:link"


def check_key(charge: Payment | str) -> str:
    """The key of a processing late fee's check timer, from the fee's own key."""
    key = charge if isinstance(charge, str) else charge.idempotency_key
    return f"{key}:check"


def late_fee_check(
    charge: Payment, since: datetime, now: datetime, *, looks: int = 0, alerted: bool = False
) -> SetTimer:
    """The next read-back of a late fee still processing (charged at ``since``, read back
    ``looks`` times so far): soon at first, then less often."""
    delay = LATE_FEE_CHECKS[min(looks, len(LATE_FEE_CHECKS) - 1)]
    payload = {"payment": charge.id, "since": iso(since), "looks": looks, "alerted": alerted}
    return SetTimer(LATE_FEE_CHECK_TIMER, now + delay, check_key(charge), payload)


async def late_fee_settled(
    notifier: Notifier, conn: BaseDBAsyncClient, booking: Booking, charge: Payment, now: datetime
) -> Outcome:
    """A charge that was processing moved the money (its event or its check says so; the one
    that comes second finds it paid and changes nothing). Nothing for any other late fee (one
    paid already, a link's checkout: its own event tells)."""
    if not await move_payment(conn, charge.id, to=PaymentStatus.PAID, was=PaymentStatus.CREATED):
        return Outcome()
    fee = Money(charge.amount_cents, charge.currency)
    told = await tell_late_fee_charged(notifier, conn, booking, fee, now)
    return Outcome(timers=[CancelTimer(check_key(charge))]) + told


async def late_fee_charge_failed(
    conn: BaseDBAsyncClient, booking: Booking, charge: Payment, payload: dict[str, object]
) -> Outcome | None:
    """A charge that was processing failed (its event or its check says so): nothing was
    charged, and the renter pays through a link (``payload``, the checkout's). None when it is
    not such a charge (any more)."""
    if not await move_payment(
        conn, charge.id, to=PaymentStatus.DECLINED, was=PaymentStatus.CREATED
    ):
        return None
    fee = Money(charge.amount_cents, charge.currency)
    link = late_fee_link(link_key(charge), payload, booking, fee, "processing_failed")
    return Outcome(timers=[CancelTimer(check_key(charge))]) + link
