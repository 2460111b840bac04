"""A pickup's or return's condition report in the ops group, through the fake Bot API: in the
renter's forum topic (opened for it where the group is a forum), the photos as one album (or
several of at most ten; a lone photo on its own), then the text with the checklist's answers,
a return's timing and late fee; posted once however often its effect is retried. A return's
"Damage?" button and ``/claim`` keep the deposit through the claim flow, against the fake
Stripe, for owners and managers only; the renter is told. Once the deposit is claimed or
released the report says so and loses the button, and a press on it changes nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from flows.booking.common import RELEASE_EFFECT
from flows.booking.handover_asks import condition_report
from flows.effects import Outcome, SetTimer
from flows.ops import REPORT_EFFECT
from flows.payments import CheckoutRequest
from flows.returns import DAMAGE_REVIEW_TIMER, damage_review_key
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


def photo(number: int) -> bytes:
    """A JPEG's first bytes, then something of its own."""
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + f"photo {number}".encode() * 40


async def returned_bike(
    ops: Ops,
    stripe: FakeStripe,
    *,
    answers: list[bool],
    photos: list[tuple[str, bytes]] | None = None,
) -> Booking:
    """Rita's bike rental KRET01, returned an hour late ($10 late fee), its return checklist
    answered, its return photos (the frame and the lock, unless ``photos`` says which) stored
    sealed, and its €200 deposit held on her card."""
    if photos is None:
        photos = list(zip(PROMPTS, (FRAME, LOCK), strict=True))
    await Asset.filter(code="B1").update(
        return_checklist=QUESTIONS, return_photos=[prompt for prompt, _ in photos]
    )
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
        photos_done=len(photos),
        answers=answers,
        started_at=NOW - timedelta(hours=1, minutes=10),
        completed_at=NOW - timedelta(hours=1),
    )
    sealer = ops.runtime.journey.sealer
    for position, (prompt, image) in enumerate(photos):
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
    """The report a completed pickup or return stages."""
    effect = condition_report(booking, HandoverKind(kind))
    assert effect.kind == REPORT_EFFECT
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
    *photos, report = in_thread(ops, topic["message_thread_id"])
    # The photos came as one album, before the text (an album carries no buttons).
    assert len(ops.fake.calls_to("sendMediaGroup")) == 1 and not ops.fake.calls_to("sendPhoto")
    assert len({p["media_group_id"] for p in photos}) == 1
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
    await ops.deliver()  # the conversation's own messages
    ops.fake.fail_next("sendMessage")  # the album goes; the text after it does not
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
    assert len(ops.fake.calls_to("sendMediaGroup")) == 1
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


@pytest.mark.parametrize(
    ("count", "albums", "alone"),
    [(1, [], 1), (10, [10], 0), (11, [6, 5], 0), (21, [7, 7, 7], 0)],
)
async def test_photos_go_in_albums_of_at_most_ten_and_a_lone_photo_on_its_own(
    ops: Ops, stripe: tuple[FakeStripe, str], count: int, albums: list[int], alone: int
) -> None:
    photos = [(f"side {n}", photo(n)) for n in range(1, count + 1)]
    booking = await returned_bike(ops, stripe[0], answers=[True, True], photos=photos)
    await report_staged(ops, booking)
    await ops.deliver()
    [topic] = ops.fake.topics[OPS_CHAT]
    *shown, report = in_thread(ops, topic)
    groups: dict[str, int] = {}
    for message in shown:
        if "media_group_id" in message:
            groups[message["media_group_id"]] = groups.get(message["media_group_id"], 0) + 1
    assert list(groups.values()) == albums
    assert len(ops.fake.calls_to("sendPhoto")) == alone
    assert [m["caption"] for m in shown] == [
        f"Return KRET01, photo {n}/{count}: side {n}" for n in range(1, count + 1)
    ]
    assert [ops.fake.files[m["photo"][0]["file_id"]].data for m in shown] == [
        image for _, image in photos
    ]
    assert buttons(report) == [("Damage?", f"ops:damage:{booking.id}")]


async def test_a_claimed_deposit_takes_the_button_off_the_report_and_a_press_changes_nothing(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    fake_stripe = stripe[0]
    booking = await returned_bike(ops, stripe[0], answers=[True, False])
    await report_staged(ops, booking)
    await ops.deliver()
    posted = await the_report(ops)  # as an operator's client still shows it
    assert "still held" in posted["text"]

    assert "Claimed €50.00" in await ops.command(MANAGER, "/claim KRET01 50")
    await ops.deliver()
    report = ops.fake.messages[(OPS_CHAT, posted["message_id"])]
    assert buttons(report) == [], "the report lost its Damage? button"
    assert "Deposit €200.00: claimed." in report["text"]
    assert "still held" not in report["text"]

    answer = await ops.press(OWNER, posted, f"ops:damage:{booking.id}")
    assert answer == "The deposit for KRET01 was already claimed."
    assert not ops.fake.force_replies, "no amount is asked for"
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.CLAIMED
    assert fake_stripe.payment_intents[str(deposit.provider_ref)]["amount_received"] == 5000
    assert await Payment.filter(booking=booking, purpose="claim").count() == 1


async def test_a_deposit_released_after_the_damage_review_takes_the_button_off_the_report(
    ops: Ops, stripe: tuple[FakeStripe, str]
) -> None:
    fake_stripe = stripe[0]
    booking = await returned_bike(ops, stripe[0], answers=[True, True])
    await report_staged(ops, booking)
    review = SetTimer(
        DAMAGE_REVIEW_TIMER,
        NOW + timedelta(hours=12),
        damage_review_key(booking.reference),
        {"booking": booking.id},
    )
    async with in_transaction() as conn:
        await stage_outcome(conn, Outcome(timers=[review]), ops.clock.now())
    await ops.deliver()
    posted = await the_report(ops)
    assert buttons(posted) == [("Damage?", f"ops:damage:{booking.id}")]

    ops.clock.advance(timedelta(hours=12, minutes=1))  # the damage review is over
    await ops.deliver()
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == PaymentStatus.RELEASED
    assert fake_stripe.payment_intents[str(deposit.provider_ref)]["status"] == "canceled"
    report = ops.fake.messages[(OPS_CHAT, posted["message_id"])]
    assert buttons(report) == []
    assert "Deposit €200.00: released." in report["text"]

    answer = await ops.press(MANAGER, posted, f"ops:damage:{booking.id}")
    assert "already released: there is nothing left to claim" in answer
    assert not ops.fake.force_replies
    await deposit.refresh_from_db()
    assert deposit.status == PaymentStatus.RELEASED
    assert not await Payment.filter(booking=booking, purpose="claim").exists()
    assert not await OutboxEffect.filter(kind=RELEASE_EFFECT, state="pending").exists()
