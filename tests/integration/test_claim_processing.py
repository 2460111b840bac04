"""A deposit claim charged off-session to the card on file (its hold lapsed into the card)
whose charge comes back ``processing`` at Stripe: through the ops group, the fake Bot API and
the fake Stripe's signed webhooks. Nobody hears "claimed" until Stripe says the money moved;
a charge that fails then keeps nothing, and ops hear of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from flows.booking import RELEASE_EFFECT
from flows.booking.common import hold_lapse_key
from flows.effects import Effect, Outcome, SetTimer
from flows.returns import DAMAGE_REVIEW_TIMER, damage_review_key
from flows.staging import stage_outcome
from storage.models import Booking, Payment
from storage.payments import PaymentStatus
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe
from tests.integration.ops_harness import MANAGER, NOW, Ops, ops_app
from tests.integration.test_condition_reports import returned_bike

KEPT = "€45.50 of your deposit for booking KRET01"


@pytest.fixture
async def stripe() -> AsyncIterator[tuple[FakeStripe, str]]:
    fake = FakeStripe(now=lambda: NOW)
    async with running(fake.app()) as base:
        yield fake, base


@pytest.fixture
async def ops(
    tmp_path: Path, sqlite_template: Path, stripe: tuple[FakeStripe, str]
) -> AsyncIterator[Ops]:
    env = {"STRIPE_API_KEY": API_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    async with ops_app(
        tmp_path, sqlite_template, stripe_base=stripe[1], env={**env, "STRIPE_API_BASE": stripe[1]}
    ) as running_ops:
        yield running_ops


async def lapsed_into_the_card(ops: Ops, stripe: FakeStripe) -> tuple[Booking, str]:
    """KRET01 returned, its damage review under way, its €200 hold lapsed: cancelled and the
    card kept on file (the lapse's release); the card's off-session charges process slowly."""
    booking = await returned_bike(ops, stripe, answers=[True, True])
    lapse = Effect(
        RELEASE_EFFECT,
        hold_lapse_key(booking.reference),
        {"booking": booking.id, "keep_card": True},
    )
    review = SetTimer(
        DAMAGE_REVIEW_TIMER,
        ops.clock.now() + timedelta(hours=6),
        damage_review_key(booking.reference),
        {"booking": booking.id},
    )
    async with in_transaction() as conn:
        await stage_outcome(conn, Outcome(effects=[lapse], timers=[review]), ops.clock.now())
    await ops.deliver()
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.CARD_ON_FILE
    card = str(deposit.details["payment_method"])
    stripe.process_slowly(card)
    return booking, card


async def webhook(ops: Ops, delivery: object) -> None:
    response = await ops.client.post(
        "/webhooks/stripe",
        data=delivery.body,  # type: ignore[attr-defined]
        headers=delivery.headers,  # type: ignore[attr-defined]
    )
    assert response.status == 200, await response.text()
    await ops.deliver()


def claim_charge(stripe: FakeStripe) -> str:
    [intent] = [
        i
        for i in stripe.payment_intents.values()
        if i["capture_method"] != "manual" and i["amount"] == 4550
    ]
    return str(intent["id"])


async def test_a_claim_still_processing_is_told_claimed_only_once_stripe_says_it_succeeded(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    fake = stripe[0]
    booking, _ = await lapsed_into_the_card(ops, fake)

    answer = await ops.command(MANAGER, "/claim KRET01 45.50")

    assert "processing" in answer and "Claimed" not in answer, answer
    intent = claim_charge(fake)
    assert fake.payment_intents[intent]["status"] == "processing"
    await ops.deliver()
    assert not any(KEPT in text for text in ops.sms.texts())
    [claim] = await Payment.filter(booking=booking, purpose="claim")
    assert claim.status != PaymentStatus.PAID
    again = await ops.command(MANAGER, "/claim KRET01")
    assert "already claimed" in again
    assert len([i for i in fake.payment_intents.values() if i["amount"] == 4550]) == 1

    # The damage review ends meanwhile: the receipt waits for the claim's outcome.
    ops.clock.current += timedelta(hours=7)
    await ops.deliver()
    assert not [t for t in ops.sms.texts() if t.startswith("Receipt for booking KRET01")]

    await webhook(ops, fake.finish_processing(intent))

    assert (await Payment.get(id=claim.id)).status == PaymentStatus.PAID
    assert sum(KEPT in text for text in ops.sms.texts()) == 1
    [receipt] = [t for t in ops.sms.texts() if t.startswith("Receipt for booking KRET01")]
    assert "Deposit of €200.00: €45.50 kept for damage" in receipt, receipt
    await webhook(ops, fake.delivery("payment_intent.succeeded", intent))  # delivered again
    assert sum(KEPT in text for text in ops.sms.texts()) == 1


async def test_a_processing_claim_that_fails_keeps_nothing_and_ops_hear_of_it(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    fake = stripe[0]
    booking, _ = await lapsed_into_the_card(ops, fake)
    await ops.command(MANAGER, "/claim KRET01 45.50")
    intent = claim_charge(fake)

    await webhook(ops, fake.finish_processing(intent, succeed=False))

    [claim] = await Payment.filter(booking=booking, purpose="claim")
    assert claim.status == PaymentStatus.DECLINED
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.CARD_ON_FILE
    assert not any(KEPT in text for text in ops.sms.texts())
    failed = [m["text"] for m in ops.ops_messages() if "claim" in m.get("text", "")]
    assert any("€45.50" in text and "KRET01" in text and "failed" in text for text in failed)

    # The review ends with nothing kept: the card on file is released, and the receipt says so.
    ops.clock.current += timedelta(hours=7)
    await ops.deliver()
    assert (await Payment.get(id=deposit.id)).status == PaymentStatus.RELEASED
    [receipt] = [t for t in ops.sms.texts() if t.startswith("Receipt for booking KRET01")]
    assert "Deposit of €200.00: released" in receipt, receipt
