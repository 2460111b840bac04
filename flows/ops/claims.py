"""Deposit claims by operators: ``/claim <booking> [amount]`` and a return report's "Damage?"
button, which asks how much (a prompt the member replies to, the whole deposit by default).

The command checks the member, the booking and that its deposit can still be claimed, and
answers with the claim to make; the ops bot (the runner) then makes it through the journey's
claim flow (``Journey.claim_deposit``: the provider's capture or charge, outside any
transaction) and commits its record, which tells the renter once the money moved, as it does
for ``keyturn deposits claim``.
"""

from __future__ import annotations

import re

from flows.booking import ClaimRefused, DepositNotClaimable
from flows.digits import DATABASE_ID_MAX, typed_int
from flows.effects import Audit, Outcome, Write
from flows.handoff import OPS_LANGUAGE
from flows.ops.answers import (
    BadArguments,
    Context,
    DepositClaim,
    OpsAnswer,
    ReasonAsked,
    Refused,
)
from flows.ops.base import DeskBase, actor_of
from flows.payments import PaymentUnavailable
from storage.models import Booking, Payment, StaffMember
from storage.money import Money, MoneyError
from storage.payments import CLAIMABLE, PaymentPurpose, PaymentStatus
from storage.uow import UnitOfWork

#: Words that claim the whole deposit, in the prompt's reply.
WHOLE = ("all", "full")


class ClaimCommands(DeskBase):
    async def _claim(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        booking = await self._booking_in_scope(staff, args[0])
        claim = await self.claim_for(booking, args[1] if len(args) > 1 else None, actor_of(staff))
        audit = Audit(
            actor_of(staff),
            "deposit.claim_asked",
            f"booking:{booking.reference}",
            {"amount": claim.amount if claim.amount is not None else "all"},
        )
        return OpsAnswer(claim=claim, outcome=Outcome(audits=[audit]))

    async def claim_for(self, booking: Booking, word: str | None, actor: str) -> DepositClaim:
        """The claim ``actor`` asks for: ``word`` of the booking's deposit (None, ``all``:
        the whole deposit). Refused (``Refused``) when the deposit was released or claimed or
        there is none, or the amount does not fit; ``BadArguments`` when it is no amount."""
        deposit = await self._claimable_deposit(booking)
        amount = None
        if word is not None and word.lower() not in WHOLE:
            amount = _typed_amount(word, deposit)
        return DepositClaim(booking.reference, amount, deposit.currency, actor)

    async def _ask_claim(self, conn: UnitOfWork, staff: StaffMember, ident: str) -> OpsAnswer:
        """The "Damage?" button: ask the member how much of the deposit they claim."""
        number = typed_int(ident, at_most=DATABASE_ID_MAX)
        booking = await Booking.get_or_none(id=number) if number is not None else None
        try:
            if booking is None:
                raise Refused("ops.not_found", what=ident[:20])
            booking = await self._booking_in_scope(staff, booking.reference)
            deposit = await self._claimable_deposit(booking)
        except Refused as refused:
            await self._refused(conn, staff.telegram_user_id, "button:damage", refused.key)
            return OpsAnswer([self.t(refused.key, **refused.params)])
        held = Money(deposit.amount_cents, deposit.currency).format(OPS_LANGUAGE)
        prompt = self.t("ops.claim_prompt", who=staff.name, booking=booking.reference, deposit=held)
        return OpsAnswer([prompt], asks=ReasonAsked(staff.name, held))

    async def _claimable_deposit(self, booking: Booking) -> Payment:
        deposit = (
            await Payment.filter(booking_id=booking.id, purpose=PaymentPurpose.DEPOSIT)
            .order_by("-id")
            .first()
        )
        if deposit is None:
            raise Refused("ops.claim_no_deposit", booking=booking.reference)
        if deposit.status == PaymentStatus.RELEASED:
            raise Refused("ops.claim_released", booking=booking.reference)
        if deposit.status == PaymentStatus.CLAIMED:
            raise Refused("ops.claim_claimed_already", booking=booking.reference)
        if deposit.status not in CLAIMABLE:
            raise Refused("ops.claim_no_deposit", booking=booking.reference)
        return deposit

    def claim_prompt(self) -> re.Pattern[str]:
        return self._pattern(
            "ops.claim_prompt", who=".*?", booking=r"(?P<booking>[A-Z0-9]+)", deposit=".*?"
        )

    async def claim(self, claim: DepositClaim) -> tuple[list[str], Write | None]:
        """Make ``claim`` through the journey's claim flow, outside any transaction: what to
        answer the member, and the write recording it (the claim, its audit, the renter told
        once the money moved) that the caller, a runner, commits. No write when it was
        refused."""
        amount = None if claim.amount is None else Money(claim.amount, claim.currency)
        try:
            taken, record = await self.journey.claim_deposit(
                claim.reference, amount, actor=claim.actor
            )
        except ClaimRefused:
            return [self.t("ops.claim_refused_by_provider", booking=claim.reference)], None
        except PaymentUnavailable:
            return [self.t("ops.claim_unavailable", booking=claim.reference)], None
        except DepositNotClaimable as refused:
            return [self.t(_REFUSALS[refused.status], booking=claim.reference)], None
        except ValueError:
            return [self.t("ops.claim_too_much", booking=claim.reference)], None
        shown = taken.amount.format(OPS_LANGUAGE)
        said = "ops.claimed" if taken.paid else "ops.claim_processing"
        return [self.t(said, booking=claim.reference, amount=shown)], record


#: What the member is told of a deposit that cannot be claimed, by its status.
_REFUSALS = {
    "released": "ops.claim_released",
    "claimed": "ops.claim_claimed_already",
    "none": "ops.claim_no_deposit",
}


def _typed_amount(word: str, deposit: Payment) -> int:
    """An amount in the deposit's currency, in major units (``25``, ``25.50``, ``25,50``), at
    most the deposit → its minor units."""
    if not re.fullmatch(r"[0-9]{1,9}(?:[.,][0-9]{1,3})?", word):
        raise BadArguments()
    held = Money(deposit.amount_cents, deposit.currency)
    try:
        amount = Money.parse(word, deposit.currency)
    except MoneyError:
        raise BadArguments() from None
    if not 0 < amount.minor <= held.minor:
        raise Refused("ops.claim_bad_amount", amount=word, most=held.format(OPS_LANGUAGE))
    return amount.minor
