"""A pickup's or return's condition report in the ops group, through the fake Bot API: in the
renter's forum topic (opened for it where the group is a forum), with the checklist's answers,
a return's timing and late fee, and the photos; posted once however often its effect is retried.
A return's "Damage?" button and ``/claim`` keep the deposit through the claim flow, against the
fake Stripe, for owners and managers only; the renter is told."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from flows.effects import Effect, Outcome
from flows.ops import REPORT_EFFECT
from flows.payments import CheckoutRequest
from flows.staging import stage_outcome
from storage.models import Asset, Booking, BookingState, Conversation, OutboxEffect, Payment, Renter
from storage.money import Money
from storage.payments import PaymentStatus, move_payment
from storage.rental_models import ConditionPhoto, Handover, HandoverKind
from tests.fakes.server import running
from tests.fakes.stripe import FakeStripe
from tests.integration.ops_harness import (
    MAINTENANCE,
    MANAGER,
    NOW,
    OPS_CHAT,
    OWNER,
    RENTER_PHONE,
    SUPPORT,
    Json,
    Ops,
    buttons,
    ops_app,
)
from tests.support import rental_times

FRAME = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00frame" + bytes(range(256)) * 4
LOCK = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00lock" + bytes(range(255, -1, -1)) * 4
QUESTIONS = ["Lights work?", "Tyres inflated?"]
PROMPTS = ["the frame", "the lock"]


@pytest.fixture
async def stripe() -> AsyncIterator[tuple[FakeStripe, str]]:
    fake = FakeStripe(now=lambda: NOW)
    async with running(fake.app()) as base:
        yield fake, base


@pytest.fixture(params=["sqlite", "postgres"])
def postgres(request: pytest.FixtureRequest) -> str | None:
    """The migrated PostgreSQL database's URL, or None for a copy of the SQLite template."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


@pytest.fixture
async def ops(
    tmp_path: Path, sqlite_template: Path, stripe: tuple[FakeStripe, str], postgres: str | None
) -> AsyncIterator[Ops]:
    async with ops_app(
        tmp_path, sqlite_template, stripe_base=stripe[1], postgres_url=postgres
    ) as running_ops:
        yield running_ops


async def returned_bike(ops: Ops, stripe: FakeStripe, *, answers: list[bool]) -> Booking:
    """Rita's bike rental KRET01, returned an hour late ($10 late fee), its return checklist
    answered, two return photos stored sealed, and its €200 deposit held on her card."""
    await Asset.filter(code="B1").update(return_checklist=QUESTIONS, return_photos=PROMPTS)
    renter = await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
    await ops.renter_says("hi")  # her conversation
    bike = await Asset.get(code="B1")
    start, end = NOW - timedelta(hours=6), NOW - timedelta(hours=2)
    booking = await Booking.create(
        reference="KRET01",
        renter=renter,
        asset=bike,
        **await rental_times(bike.id, start, end),
        state=BookingState.COMPLETED,
        currency="EUR",
        price_cents=3200,
        deposit_cents=20000,
        return_checklist_at=NOW - timedelta(hours=1),
        returned_at=NOW - timedelta(hours=1),
        return_timing="late",
        late_fee_cents=1000,
    )
    await Handover.create(
        booking=booking,
        kind=HandoverKind.RETURN,
        photos_done=2,
        answers=answers,
        started_at=NOW - timedelta(hours=1, minutes=10),
        completed_at=NOW - timedelta(hours=1),
    )
    sealer = ops.runtime.journey.sealer
    for position, (prompt, image) in enumerate(zip(PROMPTS, (FRAME, LOCK), strict=True)):
        await ConditionPhoto.create(
            booking=booking,
            kind=HandoverKind.RETURN,
            position=position,
            prompt=prompt,
            image_encrypted=sealer.seal_bytes(image),
            content_type="image/jpeg",
            created_at=NOW - timedelta(hours=1, minutes=5),
        )
    await hold_deposit(ops, stripe, booking)
    return booking


async def hold_deposit(ops: Ops, stripe: FakeStripe, booking: Booking) -> str:
    """The renter paid at a Checkout that saved her card; the deposit is held on it."""
    payments = ops.runtime.payments
    checkout = await payments.create_checkout(
        CheckoutRequest(
            booking_reference=booking.reference,
            amount=Money(booking.price_cents, "EUR"),
            description="B1",
            expires_at=NOW + timedelta(hours=1),
            success_url="https://keyturn.example/paid",
            cancel_url="https://keyturn.example/paid?cancelled=1",
            idempotency_key=f"checkout-{booking.reference}",
            save_card=True,
        )
    )
    stripe.complete(checkout.session_id)
    paid = stripe.payment_intents[str(stripe.sessions[checkout.session_id]["payment_intent"])]
    customer, method = str(paid["customer"]), str(paid["payment_method"])
    hold = await payments.place_hold(
        customer, method, Money(booking.deposit_cents, "EUR"), f"deposit:{booking.reference}"
    )
    await Payment.create(
        booking=booking,
        provider="stripe",
        purpose="deposit",
        amount_cents=booking.deposit_cents,
        currency="EUR",
        status="held",
        provider_ref=hold,
        idempotency_key=f"deposit:{booking.reference}",
        details={"customer": customer, "payment_method": method},
    )
    return hold


async def report_staged(ops: Ops, booking: Booking, kind: str = "return") -> None:
    effect = Effect(
        REPORT_EFFECT,
        f"condition-report:{booking.reference}:{kind}",
        {"booking": booking.id, "kind": kind},
    )
    async with in_transaction() as conn:
        await stage_outcome(conn, Outcome(effects=[effect]), ops.clock.now())


def in_thread(ops: Ops, thread: int) -> list[Json]:
    return [m for m in ops.ops_messages() if m.get("message_thread_id") == thread]


async def the_report(ops: Ops) -> Json:
    [report] = [m for m in ops.ops_messages() if "Return report" in m.get("text", "")]
    return report


async def test_a_return_report_goes_to_a_topic_opened_for_the_renter_with_answers_and_photos(
    ops: Ops, stripe: tuple[FakeStripe, str], caplog: pytest.LogCaptureFixture
) -> None:
    booking = await returned_bike(ops, stripe[0], answers=[True, False])
    await report_staged(ops, booking)
    caplog.set_level(logging.DEBUG)
    await ops.deliver()

    [topic] = ops.fake.topics[OPS_CHAT].values()
    assert "Rita Renter" in topic["name"]
    conversation = await Conversation.get(address=RENTER_PHONE)
    assert conversation.agent_thread_id == topic["message_thread_id"]
    report, *photos = in_thread(ops, topic["message_thread_id"])
    text = report["text"]
    assert "B1" in text and "KRET01" in text
    assert "Lights work? ✅ yes" in text
    assert "Tyres inflated? ❌ no" in text
    assert "Returned late" in text
    assert "Late fee: €10.00" in text
    assert buttons(report) == [("Damage?", f"ops:damage:{booking.id}")]
    # The photos, uploaded from the unsealed images, each captioned with its prompt.
    assert [p["caption"] for p in photos] == [
        "Return KRET01, photo 1/2: the frame",
        "Return KRET01, photo 2/2: the lock",
    ]
    uploaded = [ops.fake.files[p["photo"][0]["file_id"]].data for p in photos]
    assert uploaded == [FRAME, LOCK]
    # No photo, sealed or not, in the logs.
    sealed = [p.image_encrypted for p in await ConditionPhoto.all()]
    for record in caplog.records:
        message = record.getMessage()
        assert all(s and s not in message for s in sealed)
        assert "JFIF" not in message


async def test_a_report_whose_photo_failed_is_retried_without_posting_anything_twice(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    booking = await returned_bike(ops, stripe[0], answers=[True, True])
    ops.fake.fail_next("sendPhoto", after=1)  # the text and the first photo go; the second not
    await ops.deliver()  # the conversation's own messages
    await report_staged(ops, booking)
    await ops.deliver()
    effect = await OutboxEffect.get(kind=REPORT_EFFECT)
    assert effect.state == "pending" and effect.attempts == 1
    ops.clock.advance(timedelta(minutes=5))
    await ops.deliver()
    await effect.refresh_from_db()
    assert effect.state == "done"
    [topic] = ops.fake.topics[OPS_CHAT]
    messages = in_thread(ops, topic)
    assert len([m for m in messages if "Return report" in m.get("text", "")]) == 1
    assert [m.get("caption") for m in messages if "photo" in m] == [
        "Return KRET01, photo 1/2: the frame",
        "Return KRET01, photo 2/2: the lock",
    ]
    assert len(ops.fake.calls_to("createForumTopic")) == 1


async def test_a_pickup_report_in_a_group_without_topics_has_no_damage_button(
    tmp_path: Path, sqlite_template: Path, stripe: tuple[FakeStripe, str]
) -> None:
    async with ops_app(tmp_path, sqlite_template, forum=False, stripe_base=stripe[1]) as ops:
        booking = await returned_bike(ops, stripe[0], answers=[True, True])
        await Asset.filter(code="B1").update(pickup_checklist=["Saddle fixed?"])
        await Handover.create(
            booking=booking,
            kind=HandoverKind.PICKUP,
            answers=[True],
            started_at=NOW - timedelta(hours=6),
            completed_at=NOW - timedelta(hours=6),
        )
        await report_staged(ops, booking, "pickup")
        await ops.deliver()
        [report] = [m for m in ops.ops_messages() if "Pickup report" in m.get("text", "")]
        assert "message_thread_id" not in report
        assert "Saddle fixed? ✅ yes" in report["text"]
        assert "No photos." in report["text"]
        assert buttons(report) == []


@pytest.mark.parametrize("member", [SUPPORT, MAINTENANCE])
async def test_only_owners_and_managers_may_press_damage(
    ops: Ops, stripe: tuple[FakeStripe, str], member: int
) -> None:
    booking = await returned_bike(ops, stripe[0], answers=[True, True])
    await report_staged(ops, booking)
    await ops.deliver()
    answer = await ops.press(member, await the_report(ops), f"ops:damage:{booking.id}")
    assert "You may not use damage" in answer
    assert not ops.fake.force_replies
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.HELD
    assert "You may not use /claim" in await ops.command(member, "/claim KRET01")
    await deposit.refresh_from_db()
    assert deposit.status == PaymentStatus.HELD


async def test_damage_asks_the_amount_and_claims_it_and_the_renter_is_told(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    fake_stripe = stripe[0]
    booking = await returned_bike(ops, stripe[0], answers=[True, False])
    await report_staged(ops, booking)
    await ops.deliver()
    report = await the_report(ops)
    await ops.press(OWNER, report, f"ops:damage:{booking.id}")
    [(where, prompt_id)] = list(ops.fake.force_replies)
    prompt = ops.fake.messages[(where, prompt_id)]
    assert "€200.00" in prompt["text"] and "KRET01" in prompt["text"]
    assert prompt.get("message_thread_id") == report["message_thread_id"]

    answer = await ops.reply(OWNER, prompt, "45.50")
    assert "Claimed €45.50 of the deposit for KRET01" in answer
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.CLAIMED
    assert fake_stripe.payment_intents[str(deposit.provider_ref)]["amount_received"] == 4550
    [claim] = await Payment.filter(booking=booking, purpose="claim")
    assert claim.amount_cents == 4550
    await ops.deliver()
    assert any("€45.50 of your deposit for booking KRET01" in t for t in ops.sms.texts())

    again = await ops.command(MANAGER, "/claim KRET01")
    assert "already claimed" in again


async def test_claim_command_keeps_the_whole_deposit_and_refuses_after_its_release(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    fake_stripe = stripe[0]
    booking = await returned_bike(ops, stripe[0], answers=[True, True])
    too_much = await ops.command(MANAGER, "/claim KRET01 250")
    assert "at most the deposit, €200.00" in too_much
    answer = await ops.command(MANAGER, "/claim KRET01")
    assert "Claimed €200.00 of the deposit for KRET01" in answer
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert fake_stripe.payment_intents[str(deposit.provider_ref)]["amount_received"] == 20000

    other = await returned_second_rental(ops, fake_stripe)
    released = await Payment.get(booking=other, purpose="deposit")
    async with in_transaction() as conn:
        await move_payment(conn, released.id, to=PaymentStatus.RELEASED)
    refused = await ops.command(OWNER, "/claim KRET02 20")
    assert "already released" in refused
    await released.refresh_from_db()
    assert released.status == PaymentStatus.RELEASED
    assert fake_stripe.payment_intents[str(released.provider_ref)].get("amount_received", 0) == 0


async def returned_second_rental(ops: Ops, stripe: FakeStripe) -> Booking:
    renter = await Renter.get(phone=RENTER_PHONE)
    bike = await Asset.get(code="B1")
    start, end = NOW - timedelta(days=3), NOW - timedelta(days=3) + timedelta(hours=2)
    booking = await Booking.create(
        reference="KRET02",
        renter=renter,
        asset=bike,
        **await rental_times(bike.id, start, end),
        state=BookingState.COMPLETED,
        currency="EUR",
        price_cents=1600,
        deposit_cents=5000,
    )
    await hold_deposit(ops, stripe, booking)
    return booking


async def test_damage_answered_with_all_keeps_the_whole_deposit(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    booking = await returned_bike(ops, stripe[0], answers=[True, True])
    await report_staged(ops, booking)
    await ops.deliver()
    await ops.press(MANAGER, await the_report(ops), f"ops:damage:{booking.id}")
    [(where, prompt_id)] = list(ops.fake.force_replies)
    prompt = ops.fake.messages[(where, prompt_id)]
    assert "Reply with" in await ops.reply(MANAGER, prompt, "/claim")
    assert "Claimed €200.00 of the deposit for KRET01" in await ops.reply(MANAGER, prompt, "ALL")
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.CLAIMED
