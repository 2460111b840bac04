"""The renter's receipt at the end of a rental: when it ran and was returned, what it cost, the
extensions, the late fee and what became of the deposit.

It is sent once the deposit's fate is known (the provider released the hold, or damage was
claimed), or, for a rental without a deposit, at the confirmed return (after the late fee's
outcome when one is due): what it says is true when it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.booking.handover_asks import report_settled
from flows.effects import Audit, Outcome
from flows.i18n import Translator, local_time
from flows.notify import Notifier
from storage.models import Booking, Extension, Payment
from storage.money import Money
from storage.payments import PaymentPurpose, PaymentStatus

RECEIPT_KEY = "journey.receipt"


@dataclass(frozen=True)
class ReceiptFacts:
    reference: str
    timezone: str
    start_at: datetime
    end_at: datetime
    returned_at: datetime | None
    price: Money
    extensions: int
    extensions_price: Money
    late_fee: Money
    late_fee_paid: bool
    #: The deposit and what became of it (released or claimed), None without one.
    deposit: Money | None
    deposit_status: str | None
    claimed: Money


async def receipt_facts(conn: BaseDBAsyncClient, booking_id: int) -> ReceiptFacts:
    booking = (
        await Booking.filter(id=booking_id).using_db(conn).prefetch_related("asset__location").get()
    )
    currency = booking.currency
    applied = await Extension.filter(booking_id=booking.id, state="applied").using_db(conn)
    payments = await Payment.filter(booking_id=booking.id).using_db(conn).order_by("id")
    deposit = next((p for p in payments if p.purpose == PaymentPurpose.DEPOSIT), None)
    claimed = sum(
        p.amount_cents
        for p in payments
        if p.purpose == PaymentPurpose.CLAIM and p.status == PaymentStatus.PAID
    )
    late_fee_paid = any(
        p.purpose == PaymentPurpose.LATE_FEE and p.status == PaymentStatus.PAID for p in payments
    )
    return ReceiptFacts(
        reference=booking.reference,
        timezone=booking.asset.location.timezone,
        start_at=booking.start_at,
        end_at=booking.end_at,
        returned_at=booking.returned_at,
        price=Money(booking.price_cents, currency),
        extensions=len(applied),
        extensions_price=Money(sum(e.price_cents for e in applied), currency),
        late_fee=Money(booking.late_fee_cents, currency),
        late_fee_paid=late_fee_paid,
        deposit=None if deposit is None else Money(deposit.amount_cents, deposit.currency),
        deposit_status=None if deposit is None else deposit.status,
        claimed=Money(claimed, currency),
    )


def receipt_lines(translator: Translator, facts: ReceiptFacts, language: str) -> str:
    """The receipt's lines in ``language``; only the ones that apply to this rental."""

    def line(key: str, **params: object) -> str:
        return translator.text(language, f"journey.receipt_{key}", **params)

    def when(moment: datetime) -> str:
        return local_time(moment, facts.timezone, language)

    lines = [line("times", start=when(facts.start_at), end=when(facts.end_at))]
    if facts.returned_at is not None:
        lines.append(line("returned", at=when(facts.returned_at)))
    lines.append(line("price", amount=facts.price.format(language)))
    if facts.extensions:
        lines.append(
            line(
                "extensions",
                count=facts.extensions,
                amount=facts.extensions_price.format(language),
            )
        )
    if facts.late_fee.minor > 0:
        which = "late_fee_paid" if facts.late_fee_paid else "late_fee_due"
        lines.append(line(which, amount=facts.late_fee.format(language)))
    if facts.deposit is not None and facts.deposit_status == PaymentStatus.RELEASED:
        lines.append(line("deposit_released", amount=facts.deposit.format(language)))
    elif facts.deposit is not None and facts.deposit_status == PaymentStatus.CLAIMED:
        lines.append(
            line(
                "deposit_claimed",
                deposit=facts.deposit.format(language),
                amount=facts.claimed.format(language),
            )
        )
    return "\n".join(lines)


async def tell_receipt(
    notifier: Notifier, conn: BaseDBAsyncClient, booking_id: int, now: datetime
) -> Outcome:
    """Stage the receipt to the renter, read in the caller's unit of work; the deposit's fate
    known, its return report in the ops group is brought up to date too."""
    facts = await receipt_facts(conn, booking_id)
    renter_id = (await Booking.filter(id=booking_id).using_db(conn).get()).renter_id
    translator = notifier.translator
    await notifier.tell(
        conn,
        renter_id,
        RECEIPT_KEY,
        now=now,
        kind="receipt",
        params=lambda language: {
            "reference": facts.reference,
            "lines": receipt_lines(translator, facts, language),
        },
    )
    sent = Audit("system", "booking.receipt_sent", f"booking:{facts.reference}")
    settled = [] if facts.deposit is None else [report_settled(booking_id, facts.reference)]
    return Outcome(audits=[sent], effects=settled)
