"""Paying with Stripe and proving identity with Stripe Identity, through the real SDK against
the fake and signed webhooks: paid → deposit held on the saved card → verified → confirmed."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.payments import StripePayments
from flows.booking import CHECKOUT_EFFECT
from flows.inventory import apply_inventory, load_inventory
from flows.payments import CheckoutRequest
from flows.staging import run_unit
from storage.models import (
    Booking,
    BookingState,
    IdentityCheck,
    Message,
    OpsAlert,
    OutboxEffect,
    Payment,
)
from storage.money import Money
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe, WebhookDelivery
from tests.support import inbound


@pytest.fixture
async def stripe_app(
    database: str, clock: FakeClock
) -> AsyncIterator[tuple[FakeStripe, Runtime, TestClient[Any, Any]]]:
    fake = FakeStripe(now=clock.now)
    async with running(fake.app()) as base:
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": database,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STRIPE_API_BASE": base,
                "KEYTURN_IDENTITY_METHOD": "stripe",
            }
        )
        async with unit_of_work() as conn:
            await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
        payments = StripePayments(API_KEY, api_base=base, now=clock.now)
        runtime = build_runtime(settings, clock=clock, sandbox=True, payments=payments)
        app = create_app(runtime, sandbox=True, workers=False)
        app.cleanup_ctx.clear()  # the test's `database` fixture holds the connection
        async with TestClient(TestServer(app)) as client:
            yield fake, runtime, client
        await runtime.payments.close()  # type: ignore[attr-defined]
        if runtime.journey.identity is not None:
            await runtime.journey.identity.close()  # type: ignore[attr-defined]


async def run(runtime: Runtime) -> None:
    for _ in range(3):
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()


async def last_text() -> str:
    message = await Message.filter(direction="out").order_by("-id").first()
    assert message is not None
    return message.body


async def test_stripe_payment_and_identity(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]], clock: FakeClock
) -> None:
    fake, runtime, client = stripe_app
    await runtime.engine.handle(inbound("BOOK T1 tomorrow 10-14", at=clock.now()))
    await runtime.engine.handle(inbound("YES", at=clock.now()))
    await run(runtime)
    [session_id] = list(fake.sessions)
    assert re.search(r"Pay \$50\.00 here to confirm: http", await last_text())
    params = fake.session_params[session_id]
    assert params["client_reference_id"] == (await Booking.get()).reference
    paid = fake.complete(session_id)
    for _ in range(2):  # Stripe retries deliveries: the second changes nothing
        response = await client.post("/webhooks/stripe", data=paid.body, headers=paid.headers)
        assert response.status == 200
    tampered = await client.post("/webhooks/stripe", data=paid.body + b" ", headers=paid.headers)
    assert tampered.status == 400
    await run(runtime)
    booking = await Booking.get()
    assert booking.state == BookingState.AWAITING_ID
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "held"
    assert fake.payment_intents[str(deposit.provider_ref)]["status"] == "requires_capture"
    check = await IdentityCheck.get()
    assert check.method == "stripe_identity"
    assert "verify your ID here" in await last_text()
    verified = fake.verify_identity(str(check.provider_ref))
    assert (
        await client.post("/webhooks/stripe", data=verified.body, headers=verified.headers)
    ).status == 200
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    await run(runtime)
    assert "is confirmed" in await last_text()


async def test_a_payment_link_effect_run_again_sends_no_second_link(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]], clock: FakeClock
) -> None:
    fake, runtime, _ = stripe_app
    await runtime.engine.handle(inbound("BOOK T1 tomorrow 10-14", at=clock.now()))
    await runtime.engine.handle(inbound("YES", at=clock.now()))
    await run(runtime)
    # A worker that recorded the link and stopped before marking the effect done: the effect
    # runs again after its lease.
    effect = await OutboxEffect.get(kind=CHECKOUT_EFFECT)
    follow_up = await runtime.journey.execute_checkout(effect)
    if follow_up is not None:  # what it learnt, committed as the dispatcher would
        await run_unit(follow_up, runtime.clock.now())
    await run(runtime)
    assert len(fake.sessions) == 1, "Stripe's idempotency key gives the same session"
    assert await Payment.filter(purpose="rental").count() == 1
    links = await Message.filter(direction="out", body__contains="Pay $50.00 here")
    assert len(links) == 1


async def held_with_link(
    fake: FakeStripe, runtime: Runtime, clock: FakeClock
) -> tuple[Booking, str]:
    await runtime.engine.handle(inbound("BOOK T1 tomorrow 10-14", at=clock.now()))
    await runtime.engine.handle(inbound("YES", at=clock.now()))
    await run(runtime)
    [session_id] = list(fake.sessions)
    return await Booking.get(), session_id


async def checkout_elsewhere(runtime: Runtime, clock: FakeClock, reference: str) -> str:
    """A checkout on the same Stripe account that Keyturn did not make (a Payment Link's, say),
    carrying a booking's reference as anyone may: fifty cents."""
    checkout = await runtime.payments.create_checkout(
        CheckoutRequest(
            booking_reference=reference,
            amount=Money(50, "USD"),
            description="Something else",
            expires_at=clock.now() + timedelta(hours=1),
            success_url="https://elsewhere.example/ok",
            cancel_url="https://elsewhere.example/no",
            idempotency_key=f"elsewhere-{reference}",
        )
    )
    return checkout.session_id


async def deliver(client: TestClient[Any, Any], delivery: WebhookDelivery) -> None:
    response = await client.post("/webhooks/stripe", data=delivery.body, headers=delivery.headers)
    assert response.status == 200


async def mismatch_alerts(reference: str) -> list[OpsAlert]:
    alerts = await OpsAlert.filter(kind="payment_mismatch")
    assert all(reference in str(alert.params) for alert in alerts)
    return alerts


async def test_a_checkout_keyturn_did_not_create_confirms_nothing(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]], clock: FakeClock
) -> None:
    fake, runtime, client = stripe_app
    booking, session_id = await held_with_link(fake, runtime, clock)
    other = await checkout_elsewhere(runtime, clock, booking.reference)
    assert fake.session_params[other]["client_reference_id"] == booking.reference
    await deliver(client, fake.complete(other))
    await run(runtime)
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_PAYMENT
    assert (await Payment.get(booking=booking, purpose="rental")).status == "open"
    assert not await Payment.filter(purpose="deposit").exists()
    assert "Pay $50.00 here to confirm" in await last_text(), "the renter was told nothing new"
    [alert] = await mismatch_alerts(booking.reference)
    assert other in str(alert.params)
    # The renter's own checkout still confirms the booking.
    await deliver(client, fake.complete(session_id))
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_ID


async def test_an_expiry_or_refund_keyturn_did_not_cause_changes_nothing(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]], clock: FakeClock
) -> None:
    fake, runtime, client = stripe_app
    booking, session_id = await held_with_link(fake, runtime, clock)
    expiring = await checkout_elsewhere(runtime, clock, booking.reference)
    await deliver(client, fake.expire(expiring))
    await run(runtime)
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_PAYMENT
    assert fake.sessions[session_id]["status"] == "open", "Keyturn's checkout was not closed"
    assert "was not paid in time" not in await last_text()
    # The renter pays; then a charge elsewhere, in the booking's name, is refunded.
    await deliver(client, fake.complete(session_id))
    await run(runtime)
    refunded = fake.complete(await checkout_elsewhere(runtime, clock, booking.reference + "X"))
    intent = json.loads(refunded.body)["data"]["object"]["payment_intent"]
    fake.payment_intents[intent]["metadata"]["booking"] = booking.reference
    charge = fake.charges[fake.payment_intents[intent]["latest_charge"]]
    charge["metadata"]["booking"] = booking.reference
    await runtime.payments.refund(intent, None, "refund-elsewhere")
    await deliver(client, fake.delivery("charge.refunded", charge["id"]))
    await run(runtime)
    assert not await Payment.filter(purpose="refund").exists()
    assert len(await mismatch_alerts(booking.reference)) == 2
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_ID


@pytest.mark.parametrize(("field", "value"), [("amount_total", 1), ("currency", "eur")])
async def test_a_keyturn_checkout_paid_with_another_amount_or_currency_is_not_confirmed(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]],
    clock: FakeClock,
    field: str,
    value: object,
) -> None:
    fake, runtime, client = stripe_app
    booking, session_id = await held_with_link(fake, runtime, clock)
    event = json.loads(fake.complete(session_id).body)
    event["data"]["object"][field] = value
    await deliver(client, fake.sign(event))
    await run(runtime)
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_PAYMENT
    assert (await Payment.get(booking=booking, purpose="rental")).status == "open"
    [alert] = await mismatch_alerts(booking.reference)
    assert session_id in str(alert.params)


async def test_a_payment_link_whose_answer_was_lost_is_the_same_request_when_retried(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]], clock: FakeClock
) -> None:
    fake, runtime, _ = stripe_app
    # Stripe creates the session but every answer to it (the SDK's own retries too) is lost.
    fake.lose_next_answers(3, path="/v1/checkout/sessions")
    await runtime.engine.handle(inbound("BOOK T1 tomorrow 10-14", at=clock.now()))
    await runtime.engine.handle(inbound("YES", at=clock.now()))
    await run(runtime)
    assert len(fake.sessions) == 1
    assert not await Message.filter(direction="out", body__contains="Pay $50.00 here")
    clock.advance(timedelta(minutes=3))  # the effect's next attempt, with the same key
    await run(runtime)
    replays = [c for c in fake.calls if c.path == "/v1/checkout/sessions"]
    assert len({c.idempotency_key for c in replays}) == 1
    assert len(fake.sessions) == 1, "the retry is answered with the first session, not refused"
    [session_id] = list(fake.sessions)
    links = await Message.filter(direction="out", body__contains="Pay $50.00 here")
    assert len(links) == 1
    assert fake.sessions[session_id]["url"] in links[0].body
    assert not await OpsAlert.filter(kind="effect_failing").exists()
    # The session outlives the renter's 30-minute hold by Stripe's minimum 30 minutes; Keyturn
    # itself expires it when the hold ends.
    booking = await Booking.get()
    assert booking.hold_expires_at is not None
    expires = int(fake.sessions[session_id]["expires_at"])
    assert expires == int((booking.hold_expires_at + timedelta(minutes=30)).timestamp())
    clock.advance(timedelta(minutes=28))
    await run(runtime)
    assert fake.sessions[session_id]["status"] == "expired"
    await booking.refresh_from_db()
    assert booking.state == BookingState.EXPIRED


async def test_a_payment_link_retried_too_late_to_be_the_same_request_goes_under_a_new_key(
    stripe_app: tuple[FakeStripe, Runtime, TestClient[Any, Any]], clock: FakeClock
) -> None:
    fake, runtime, _ = stripe_app
    fake.fail_next(3, status=503, path="/v1/checkout/sessions")  # never reached Stripe
    await runtime.engine.handle(inbound("BOOK T1 tomorrow 10-14", at=clock.now()))
    await runtime.engine.handle(inbound("YES", at=clock.now()))
    await run(runtime)
    assert not fake.sessions
    # The outbox's next attempt comes when the session's expiry is under 32 minutes away: sent
    # unchanged it could be refused as a new request, changed it would be refused under its key.
    effect = await OutboxEffect.get(kind=CHECKOUT_EFFECT)
    clock.advance(timedelta(minutes=29))
    await OutboxEffect.filter(id=effect.id).update(next_attempt_at=clock.now())
    await run(runtime)
    keys = {c.idempotency_key for c in fake.calls if c.path == "/v1/checkout/sessions"}
    assert len(keys) == 2
    [session_id] = list(fake.sessions)
    assert int(fake.sessions[session_id]["expires_at"]) >= int(
        (clock.now() + timedelta(minutes=30)).timestamp()
    )
    links = await Message.filter(direction="out", body__contains="Pay $50.00 here")
    assert len(links) == 1
