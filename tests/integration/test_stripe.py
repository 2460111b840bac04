"""Stripe payments and identity through the real SDK against the fake Stripe API, and webhooks."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import pytest
import stripe

from bot.payments import StripeIdentity, StripePayments, StripeWebhookInvalid, parse_stripe_event
from bot.payments.stripe import CAPTURE_METADATA_KEY
from flows.payments import (
    ChargeState,
    CheckoutRequest,
    PaymentEventKind,
    PaymentNeedsAuthentication,
    PaymentRefused,
    PaymentUnavailable,
)
from storage.money import Money, MoneyError
from tests.fakes.server import running
from tests.fakes.stripe import (
    API_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    StripeApiError,
    WebhookDelivery,
    load_fixture,
    parse_form,
)

BOOKING = "BK-7Q2M"


def eur(cents: int) -> Money:
    return Money(cents, "EUR")


def checkout_request(**changes: Any) -> CheckoutRequest:
    request = CheckoutRequest(
        booking_reference=BOOKING,
        amount=eur(4500),
        description="Trailer T1 · 1 June 09:00-17:00",
        expires_at=datetime.now(UTC) + timedelta(minutes=45),
        success_url="https://rent.example.com/pay/thanks",
        cancel_url="https://rent.example.com/pay/cancelled",
        idempotency_key=f"checkout-{BOOKING}-1",
        locale="de",
        metadata={"asset": "T1"},
    )
    return replace(request, **changes)


def parse(delivery: WebhookDelivery, secret: str = WEBHOOK_SECRET) -> Any:
    return parse_stripe_event(delivery.body, delivery.signature, secret)


@pytest.fixture
def fake() -> FakeStripe:
    return FakeStripe()


@pytest.fixture
async def base(fake: FakeStripe) -> AsyncIterator[str]:
    async with running(fake.app()) as url:
        yield url


@pytest.fixture
async def payments(base: str) -> AsyncIterator[StripePayments]:
    provider = StripePayments(API_KEY, api_base=base, timeout=2.0, max_network_retries=0)
    yield provider
    await provider.close()


@pytest.fixture
async def identity(base: str) -> AsyncIterator[StripeIdentity]:
    provider = StripeIdentity(API_KEY, api_base=base, timeout=2.0, max_network_retries=0)
    yield provider
    await provider.close()


@pytest.fixture
async def sdk(base: str) -> AsyncIterator[stripe.StripeClient]:
    """The bare SDK, to show the fake refuses what Stripe refuses."""
    http = stripe.AIOHTTPClient()
    yield stripe.StripeClient(
        API_KEY, base_addresses={"api": base}, max_network_retries=0, http_client=http
    )
    await http.close_async()  # type: ignore[no-untyped-call]


# --- Checkout ---------------------------------------------------------------------------------


async def test_checkout_is_created_with_the_booking_amount_and_expiry(
    payments: StripePayments, fake: FakeStripe, base: str
) -> None:
    request = checkout_request()
    checkout = await payments.create_checkout(request)

    assert checkout.session_id.startswith("cs_test_")
    assert checkout.url == f"{base}/pay/{checkout.session_id}"
    assert checkout.expires_at == datetime.fromtimestamp(int(request.expires_at.timestamp()), UTC)
    sent = fake.session_params[checkout.session_id]
    assert sent["mode"] == "payment"
    assert sent["line_items"] == [
        {
            "price_data": {
                "currency": "eur",
                "unit_amount": "4500",
                "product_data": {"name": "Trailer T1 · 1 June 09:00-17:00"},
            },
            "quantity": "1",
        }
    ]
    assert sent["client_reference_id"] == BOOKING
    assert sent["metadata"] == {"asset": "T1", "booking": BOOKING}
    assert sent["payment_intent_data"] == {"metadata": {"asset": "T1", "booking": BOOKING}}
    assert sent["expires_at"] == str(int(request.expires_at.timestamp()))
    assert sent["success_url"] == request.success_url
    assert sent["cancel_url"] == request.cancel_url
    assert sent["locale"] == "de"
    assert "customer_creation" not in sent
    session = fake.sessions[checkout.session_id]
    assert (session["amount_total"], session["currency"], session["status"]) == (
        4500,
        "eur",
        "open",
    )
    [call] = fake.posts("/v1/checkout/sessions")
    assert call.idempotency_key == request.idempotency_key
    assert call.stripe_version  # the SDK pins its API version
    async with aiohttp.ClientSession() as http, http.get(checkout.url) as page:
        assert page.status == 200
        assert "45.00 EUR" in await page.text()


async def test_a_hold_asks_for_manual_capture(payments: StripePayments, fake: FakeStripe) -> None:
    checkout = await payments.create_checkout(checkout_request(hold=True, amount=eur(30000)))

    sent = fake.session_params[checkout.session_id]
    assert sent["payment_intent_data"]["capture_method"] == "manual"
    assert "setup_future_usage" not in sent["payment_intent_data"]
    assert sent["metadata"][CAPTURE_METADATA_KEY] == "manual"


async def test_saving_the_card_creates_a_customer_and_keeps_the_card_for_later(
    payments: StripePayments, fake: FakeStripe
) -> None:
    checkout = await payments.create_checkout(checkout_request(save_card=True, hold=True))

    sent = fake.session_params[checkout.session_id]
    assert sent["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert sent["payment_intent_data"]["capture_method"] == "manual"
    assert sent["customer_creation"] == "always"


async def test_the_same_idempotency_key_twice_is_one_session(
    payments: StripePayments, fake: FakeStripe
) -> None:
    request = checkout_request()
    first = await payments.create_checkout(request)
    second = await payments.create_checkout(request)

    assert first == second
    assert len(fake.sessions) == 1
    assert len(fake.posts("/v1/checkout/sessions")) == 2


async def test_the_same_key_for_another_checkout_is_refused(
    payments: StripePayments, fake: FakeStripe
) -> None:
    request = checkout_request()
    await payments.create_checkout(request)

    with pytest.raises(PaymentRefused, match="IdempotencyError"):
        await payments.create_checkout(replace(request, amount=eur(5000)))
    assert len(fake.sessions) == 1


@pytest.mark.parametrize(
    "expires_in",
    [
        lambda: datetime.now(UTC) + timedelta(minutes=20),
        lambda: datetime.now(UTC) - timedelta(minutes=1),
        lambda: datetime.now(UTC) + timedelta(hours=24, minutes=5),
        lambda: datetime.now().replace(tzinfo=None) + timedelta(hours=1),
    ],
    ids=["20-minutes", "past", "over-24-hours", "naive"],
)
async def test_an_expiry_out_of_range_is_refused_before_calling_stripe(
    payments: StripePayments, fake: FakeStripe, expires_in: Callable[[], datetime]
) -> None:
    """Each expiry is taken when the test runs, not when the suite was collected."""
    with pytest.raises(ValueError, match="expires_at"):
        await payments.create_checkout(checkout_request(expires_at=expires_in()))
    assert fake.calls == []


async def test_an_expiry_that_slipped_under_30_minutes_in_the_outbox_is_lifted(
    payments: StripePayments, fake: FakeStripe
) -> None:
    started = datetime.now(UTC)
    checkout = await payments.create_checkout(
        checkout_request(expires_at=started + timedelta(minutes=29))
    )

    assert checkout.expires_at >= started + timedelta(minutes=30)
    assert fake.sessions[checkout.session_id]["expires_at"] == int(checkout.expires_at.timestamp())


async def test_other_bad_requests_are_refused_locally(payments: StripePayments) -> None:
    with pytest.raises(ValueError):
        await payments.create_checkout(checkout_request(amount=eur(0)))
    with pytest.raises(MoneyError):
        Money(4500, "euro")


async def test_expiring_a_checkout_closes_it_and_a_closed_one_is_not_an_error(
    payments: StripePayments, fake: FakeStripe
) -> None:
    open_one = await payments.create_checkout(checkout_request())
    paid_one = await payments.create_checkout(checkout_request(idempotency_key="checkout-2"))
    fake.complete(paid_one.session_id)

    assert await payments.expire_checkout(open_one.session_id) is True
    assert await payments.expire_checkout(open_one.session_id) is True
    assert await payments.expire_checkout(paid_one.session_id) is False

    assert fake.sessions[open_one.session_id]["status"] == "expired"
    assert fake.sessions[paid_one.session_id]["status"] == "complete"
    with pytest.raises(PaymentRefused, match="resource_missing"):
        await payments.expire_checkout("cs_test_missing")


# --- holds, refunds, saved cards --------------------------------------------------------------


async def paid(payments: StripePayments, fake: FakeStripe, **changes: Any) -> str:
    """A checkout the renter has paid; returns its PaymentIntent id."""
    checkout = await payments.create_checkout(checkout_request(**changes))
    fake.complete(checkout.session_id)
    intent: str = fake.sessions[checkout.session_id]["payment_intent"]
    return intent


async def test_a_hold_is_captured_in_part(payments: StripePayments, fake: FakeStripe) -> None:
    intent = await paid(payments, fake, hold=True, amount=eur(30000))
    assert fake.payment_intents[intent]["status"] == "requires_capture"

    await payments.capture_hold(intent, eur(12000), key="claim-1")

    captured = fake.payment_intents[intent]
    assert (captured["status"], captured["amount_received"]) == ("succeeded", 12000)
    [call] = fake.posts(f"/v1/payment_intents/{intent}/capture")
    assert call.params == {"amount_to_capture": "12000"}
    assert call.idempotency_key == "claim-1"
    await payments.capture_hold(intent, eur(12000), key="claim-1-again")  # already captured: done


async def test_capturing_what_is_not_a_hold_is_refused(
    payments: StripePayments, fake: FakeStripe
) -> None:
    intent = await paid(payments, fake)
    with pytest.raises(PaymentRefused, match="payment_intent_unexpected_state"):
        await payments.capture_hold(intent, None, key="claim-2")

    hold = await paid(payments, fake, hold=True, idempotency_key="hold-2", amount=eur(30000))
    with pytest.raises(PaymentRefused, match="amount_to_capture"):
        await payments.capture_hold(hold, eur(30001), key="claim-3")
    assert fake.payment_intents[hold]["status"] == "requires_capture"


async def test_a_hold_is_released_once_and_releasing_again_is_fine(
    payments: StripePayments, fake: FakeStripe
) -> None:
    intent = await paid(payments, fake, hold=True)

    await payments.release_hold(intent, key="release-1")
    await payments.release_hold(intent, key="release-2")

    assert fake.payment_intents[intent]["status"] == "canceled"
    assert len(fake.posts(f"/v1/payment_intents/{intent}/cancel")) == 2
    captured = await paid(payments, fake, idempotency_key="checkout-3")
    with pytest.raises(PaymentRefused, match="payment_intent_unexpected_state"):
        await payments.release_hold(captured, key="release-3")


async def test_refunds_in_part_then_the_rest_and_never_more(
    payments: StripePayments, fake: FakeStripe
) -> None:
    intent = await paid(payments, fake)

    first = await payments.refund(intent, eur(1500), key="refund-1")
    with pytest.raises(PaymentRefused, match="amount_too_large"):
        await payments.refund(intent, eur(4000), key="refund-2")
    rest = await payments.refund(intent, None, key="refund-3")

    assert first.startswith("re_") and rest.startswith("re_") and first != rest
    assert [fake.refunds[r]["amount"] for r in (first, rest)] == [1500, 3000]
    charge = fake.charges[fake.payment_intents[intent]["latest_charge"]]
    assert (charge["amount_refunded"], charge["refunded"]) == (4500, True)
    assert await payments.refund(intent, eur(1500), key="refund-1") == first  # a retried effect


async def test_a_saved_card_is_charged_and_held_off_session(
    payments: StripePayments, fake: FakeStripe
) -> None:
    intent = fake.payment_intents[await paid(payments, fake, save_card=True, hold=True)]
    customer, method = intent["customer"], intent["payment_method"]
    assert customer.startswith("cus_") and method.startswith("pm_")

    charged = await payments.charge_saved_card(customer, method, eur(7000), key="claim-7")
    held = await payments.place_hold(customer, method, eur(30000), key="rehold-7")

    assert charged.paid
    assert fake.payment_intents[charged.intent]["status"] == "succeeded"
    assert fake.payment_intents[held]["status"] == "requires_capture"
    sent = fake.posts("/v1/payment_intents")[0].params
    assert sent == {
        "amount": "7000",
        "currency": "eur",
        "customer": customer,
        "payment_method": method,
        "off_session": "true",
        "confirm": "true",
    }
    assert fake.posts("/v1/payment_intents")[1].params["capture_method"] == "manual"


async def test_an_off_session_charge_still_processing_is_not_paid_and_no_hold(
    payments: StripePayments, fake: FakeStripe
) -> None:
    intent = fake.payment_intents[await paid(payments, fake, save_card=True)]
    customer, method = intent["customer"], intent["payment_method"]
    fake.process_slowly(method)

    charge = await payments.charge_saved_card(customer, method, eur(700), key="fee-3")
    assert not charge.paid
    assert fake.payment_intents[charge.intent]["status"] == "processing"
    assert await payments.charge_saved_card(customer, method, eur(700), key="fee-3") == charge
    with pytest.raises(PaymentRefused, match=r"pi_\w+ is processing"):
        await payments.place_hold(customer, method, eur(30000), key="rehold-3")

    succeeded = parse(fake.finish_processing(charge.intent))
    assert succeeded.kind is PaymentEventKind.PAYMENT_SUCCEEDED
    assert (succeeded.object_id, succeeded.amount, succeeded.currency) == (
        charge.intent,
        700,
        "eur",
    )


@pytest.mark.parametrize("succeed", [True, False])
async def test_a_processing_charge_is_read_back_as_stripe_has_it_now(
    payments: StripePayments, fake: FakeStripe, succeed: bool
) -> None:
    intent = fake.payment_intents[await paid(payments, fake, save_card=True)]
    customer, method = intent["customer"], intent["payment_method"]
    fake.process_slowly(method)
    named = {"booking": "KT-7", "purpose": "late_fee"}

    charge = await payments.charge_saved_card(customer, method, eur(700), "fee-4", metadata=named)
    assert fake.posts("/v1/payment_intents")[-1].params["metadata"] == named
    assert await payments.charge_state(charge.intent) is ChargeState.PROCESSING
    event = parse(fake.finish_processing(charge.intent, succeed=succeed))
    assert event.booking_reference == "KT-7"

    decided = ChargeState.PAID if succeed else ChargeState.FAILED
    assert await payments.charge_state(charge.intent) is decided
    assert [c.method for c in fake.calls if c.path == f"/v1/payment_intents/{charge.intent}"] == [
        "GET",
        "GET",
    ]
    with pytest.raises(PaymentRefused, match="resource_missing"):
        await payments.charge_state("pi_nobody")


async def test_a_saved_card_that_wants_authentication_is_told_apart_from_a_decline(
    payments: StripePayments, fake: FakeStripe
) -> None:
    wants_renter = fake.payment_intents[await paid(payments, fake, save_card=True)]
    fake.decline(wants_renter["payment_method"], "authentication_required")
    declined = fake.payment_intents[
        await paid(payments, fake, save_card=True, idempotency_key="checkout-2")
    ]
    fake.decline(declined["payment_method"], "card_declined")

    for _ in range(2):  # retried under its key: the same 402, replayed
        with pytest.raises(PaymentNeedsAuthentication, match="authentication_required"):
            await payments.charge_saved_card(
                wants_renter["customer"], wants_renter["payment_method"], eur(700), key="fee-1"
            )
    [refused] = [e for e in fake.events if e["type"] == "payment_intent.payment_failed"]
    assert refused["data"]["object"]["status"] == "requires_payment_method"
    with pytest.raises(PaymentRefused, match="card_declined") as hard:
        await payments.charge_saved_card(
            declined["customer"], declined["payment_method"], eur(700), key="fee-2"
        )
    assert not isinstance(hard.value, PaymentNeedsAuthentication)
    with pytest.raises(PaymentRefused, match="IdempotencyError"):
        await payments.charge_saved_card(
            wants_renter["customer"], wants_renter["payment_method"], eur(800), key="fee-1"
        )


async def test_a_declined_saved_card_is_refused(payments: StripePayments, fake: FakeStripe) -> None:
    intent = fake.payment_intents[await paid(payments, fake, save_card=True)]
    fake.decline(intent["payment_method"], "authentication_required")

    with pytest.raises(PaymentRefused, match=r"CardError.*authentication_required"):
        await payments.charge_saved_card(
            intent["customer"], intent["payment_method"], eur(7000), key="claim-8"
        )
    with pytest.raises(PaymentRefused, match="resource_missing"):
        await payments.charge_saved_card("cus_nobody", "pm_none", eur(7000), key="claim-9")


# --- failures ---------------------------------------------------------------------------------


async def test_a_server_error_is_unavailable(payments: StripePayments, fake: FakeStripe) -> None:
    fake.fail_next(1, status=500)
    with pytest.raises(PaymentUnavailable, match="HTTP 500"):
        await payments.create_checkout(checkout_request())
    fake.fail_next(1, status=502, json_body=False)
    with pytest.raises(PaymentUnavailable, match="HTTP 502"):
        await payments.refund("pi_any", None, key="refund-x")
    fake.fail_next(1, status=429)
    with pytest.raises(PaymentUnavailable, match="RateLimitError"):
        await payments.release_hold("pi_any", key="release-x")
    assert fake.sessions == {}


async def test_the_sdk_retries_a_server_error_with_the_same_key(
    fake: FakeStripe, base: str
) -> None:
    provider = StripePayments(API_KEY, api_base=base, timeout=5.0, max_network_retries=2)
    try:
        fake.fail_next(1, status=500)
        checkout = await provider.create_checkout(checkout_request())
    finally:
        await provider.close()

    calls = fake.posts("/v1/checkout/sessions")
    assert [c.idempotency_key for c in calls] == [f"checkout-{BOOKING}-1"] * 2
    assert list(fake.sessions) == [checkout.session_id]


async def test_a_hanging_stripe_is_unavailable_within_the_timeout(
    fake: FakeStripe, base: str
) -> None:
    provider = StripePayments(API_KEY, api_base=base, timeout=0.5, max_network_retries=0)
    fake.hang_next(1, seconds=10)
    started = time.monotonic()
    try:
        with pytest.raises(PaymentUnavailable, match=r"no answer within 0\.5 s"):
            await provider.create_checkout(checkout_request())
    finally:
        await provider.close()
    assert time.monotonic() - started < 2


async def test_an_unreachable_stripe_is_unavailable() -> None:
    provider = StripePayments(API_KEY, api_base="http://127.0.0.1:9", max_network_retries=0)
    try:
        with pytest.raises(PaymentUnavailable, match="APIConnectionError"):
            await provider.refund("pi_any", None, key="refund-y")
    finally:
        await provider.close()


async def test_a_bad_key_is_refused_without_showing_it(
    fake: FakeStripe, base: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk_test_51WrongKeyWrongKeyWrongKey0000000000000000000000000000000wxyz"
    provider = StripePayments(wrong, api_base=base, max_network_retries=0)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(PaymentRefused, match="AuthenticationError, HTTP 401") as caught:
            await provider.create_checkout(checkout_request())
    finally:
        await provider.close()

    shown = f"{caught.value!s} {caught.value!r} {caught.value.__cause__!r} {provider!r}"
    assert wrong not in shown and "wxyz" not in shown
    assert wrong not in caplog.text
    assert fake.sessions == {}


async def test_a_key_without_the_permission_is_refused(
    payments: StripePayments, fake: FakeStripe
) -> None:
    fake.fail_next(1, status=403)
    with pytest.raises(PaymentRefused, match="PermissionError, HTTP 403"):
        await payments.refund("pi_any", None, key="refund-z")


async def test_a_provider_never_used_closes_cleanly() -> None:
    provider = StripePayments(API_KEY)
    await provider.close()


# --- the fake refuses what Stripe refuses -----------------------------------------------------


async def test_the_fake_refuses_checkouts_stripe_would_refuse(sdk: stripe.StripeClient) -> None:
    now = int(time.time())
    good: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "eur",
                    "unit_amount": 4500,
                    "product_data": {"name": "T1"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "https://rent.example.com/ok",
        "expires_at": now + 3600,
    }
    bad_ones = [
        {**good, "expires_at": now + 600},
        {**good, "expires_at": now + 25 * 3600},
        {key: value for key, value in good.items() if key != "line_items"},
        {key: value for key, value in good.items() if key != "success_url"},
        {**good, "line_items": [{"quantity": 1}]},
        {**good, "payment_intent_data": {"capture_method": "later"}},
        {**good, "surprise": "yes"},
        {**good, "metadata": {"k" * 41: "v"}},
    ]
    for params in bad_ones:
        with pytest.raises(stripe.InvalidRequestError):
            await sdk.v1.checkout.sessions.create_async(cast(Any, params))
    session = await sdk.v1.checkout.sessions.create_async(cast(Any, good))
    assert session.status == "open"


async def test_the_fake_reads_stripe_form_encoding() -> None:
    parsed = parse_form(
        [
            ("line_items[0][price_data][currency]", "eur"),
            ("line_items[0][quantity]", "1"),
            ("line_items[1][quantity]", "2"),
            ("metadata[booking]", "BK-1"),
            ("mode", "payment"),
        ]
    )
    assert parsed == {
        "line_items": [{"price_data": {"currency": "eur"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"booking": "BK-1"},
        "mode": "payment",
    }
    for bad in (
        [("line_items[1][quantity]", "1")],
        [("metadata[a", "1")],
        [("mode", "a"), ("mode", "b")],
        [("metadata", "x"), ("metadata[a]", "1")],
    ):
        with pytest.raises(StripeApiError, match=r"Invalid|more than once"):
            parse_form(bad)


async def test_the_fake_checks_the_key_and_answers_like_stripe(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/checkout/sessions") as response:
            body = await response.json()
        assert response.status == 401
        assert body["error"]["type"] == "invalid_request_error"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.get(f"{base}/v1/payment_intents/pi_nope", headers=headers) as response:
            body = await response.json()
        assert response.status == 404
        assert body["error"]["code"] == "resource_missing"


# --- webhooks ---------------------------------------------------------------------------------


async def test_a_paid_checkout_is_checkout_paid(payments: StripePayments, fake: FakeStripe) -> None:
    checkout = await payments.create_checkout(checkout_request())
    event = parse(fake.complete(checkout.session_id))

    session = fake.sessions[checkout.session_id]
    assert event.kind is PaymentEventKind.CHECKOUT_PAID
    assert event.booking_reference == BOOKING
    assert event.object_id == checkout.session_id
    assert (event.amount, event.currency) == (4500, "eur")
    assert event.payment_intent == session["payment_intent"]
    assert event.event_id.startswith("evt_")
    assert event.raw["data"]["object"]["payment_status"] == "paid"


async def test_a_completed_hold_is_checkout_paid_with_its_intent(
    payments: StripePayments, fake: FakeStripe
) -> None:
    checkout = await payments.create_checkout(checkout_request(hold=True, save_card=True))
    event = parse(fake.complete(checkout.session_id))

    session = fake.sessions[checkout.session_id]
    assert session["payment_status"] == "unpaid"
    assert event.kind is PaymentEventKind.CHECKOUT_PAID
    assert event.payment_intent == session["payment_intent"]
    assert event.customer == session["customer"]

    placed = parse(fake.delivery("payment_intent.amount_capturable_updated"))
    assert placed.kind is PaymentEventKind.HOLD_PLACED
    assert (placed.object_id, placed.payment_intent) == (event.payment_intent,) * 2
    assert (placed.amount, placed.booking_reference) == (4500, BOOKING)
    assert placed.payment_method == fake.payment_intents[event.payment_intent]["payment_method"]


def signed_fixture(name: str, **changes: Any) -> WebhookDelivery:
    event = load_fixture(name)
    for path, value in changes.items():
        node = event
        *parents, last = path.split("__")
        for parent in parents:
            node = node[parent]
        node[last] = value
    return FakeStripe().sign(event)


async def test_a_completed_but_unpaid_checkout_waits_for_the_delayed_payment() -> None:
    unpaid = signed_fixture(
        "event.checkout.session.completed.json", data__object__payment_status="unpaid"
    )
    assert parse(unpaid).kind is PaymentEventKind.OTHER
    succeeded = signed_fixture(
        "event.checkout.session.completed.json",
        type="checkout.session.async_payment_succeeded",
    )
    assert parse(succeeded).kind is PaymentEventKind.CHECKOUT_PAID


async def test_expired_released_refunded_and_failed_events(
    payments: StripePayments, fake: FakeStripe
) -> None:
    checkout = await payments.create_checkout(checkout_request())
    expired = parse(fake.expire(checkout.session_id))
    assert (expired.kind, expired.booking_reference) == (
        PaymentEventKind.CHECKOUT_EXPIRED,
        BOOKING,
    )

    hold = await paid(payments, fake, hold=True, idempotency_key="hold-9")
    await payments.release_hold(hold, key="release-9")
    cancelled = parse(fake.delivery("payment_intent.canceled", hold))
    assert (cancelled.kind, cancelled.payment_intent) == (PaymentEventKind.HOLD_CANCELLED, hold)
    assert cancelled.booking_reference == BOOKING

    intent = await paid(payments, fake, idempotency_key="pay-9")
    await payments.refund(intent, eur(1000), key="refund-9")
    refunded = parse(fake.delivery("charge.refunded"))
    assert refunded.kind is PaymentEventKind.REFUNDED
    assert (refunded.amount, refunded.payment_intent) == (1000, intent)
    assert refunded.booking_reference == BOOKING
    assert refunded.object_id == fake.payment_intents[intent]["latest_charge"]

    saved = fake.payment_intents[await paid(payments, fake, idempotency_key="s-9", save_card=True)]
    fake.decline(saved["payment_method"])
    with pytest.raises(PaymentRefused):
        await payments.charge_saved_card(
            saved["customer"], saved["payment_method"], eur(900), key="charge-9"
        )
    failed = parse(fake.delivery("payment_intent.payment_failed"))
    assert (failed.kind, failed.amount) == (PaymentEventKind.PAYMENT_FAILED, 900)


@pytest.mark.parametrize(
    ("fixture", "kind", "reference", "amount"),
    [
        ("event.checkout.session.completed.json", PaymentEventKind.CHECKOUT_PAID, BOOKING, 4500),
        (
            "event.payment_intent.amount_capturable_updated.json",
            PaymentEventKind.HOLD_PLACED,
            BOOKING,
            30000,
        ),
        ("event.charge.refunded.json", PaymentEventKind.REFUNDED, BOOKING, 1500),
        (
            "event.identity.verification_session.verified.json",
            PaymentEventKind.IDENTITY_VERIFIED,
            "RN-41",
            None,
        ),
    ],
)
async def test_recorded_stripe_events_are_normalized(
    fixture: str, kind: PaymentEventKind, reference: str, amount: int | None
) -> None:
    recorded = load_fixture(fixture)
    event = parse(FakeStripe().sign(recorded))

    assert (event.kind, event.booking_reference, event.amount) == (kind, reference, amount)
    assert event.event_id == recorded["id"]
    assert event.object_id == recorded["data"]["object"]["id"]
    assert event.occurred_at == datetime.fromtimestamp(recorded["created"], UTC)


async def test_an_event_we_do_not_handle_is_other() -> None:
    event = parse(signed_fixture("event.charge.refunded.json", type="charge.dispute.created"))
    assert event.kind is PaymentEventKind.OTHER
    assert event.booking_reference == BOOKING


def tampered(delivery: WebhookDelivery) -> WebhookDelivery:
    return replace(
        delivery, body=delivery.body.replace(b'"amount_total": 4500', b'"amount_total": 1')
    )


async def test_webhooks_that_are_not_stripes_are_refused(
    payments: StripePayments, fake: FakeStripe
) -> None:
    checkout = await payments.create_checkout(checkout_request())
    genuine = fake.complete(checkout.session_id)
    body = json.loads(genuine.body)
    old = fake.sign(body, timestamp=int(time.time()) - 600)

    forged = [
        (tampered(genuine).body, genuine.signature, WEBHOOK_SECRET),
        (genuine.body, genuine.signature, "whsec_someoneElsesSecret"),
        (genuine.body, None, WEBHOOK_SECRET),
        (genuine.body, "", WEBHOOK_SECRET),
        (genuine.body, "t=abc,v1=def", WEBHOOK_SECRET),
        (genuine.body, genuine.signature.replace("v1=", "v0="), WEBHOOK_SECRET),
        (old.body, old.signature, WEBHOOK_SECRET),
        (genuine.body, genuine.signature, ""),
    ]
    assert tampered(genuine).body != genuine.body
    for payload, header, secret in forged:
        with pytest.raises(StripeWebhookInvalid) as caught:
            parse_stripe_event(payload, header, secret)
        assert WEBHOOK_SECRET not in str(caught.value)
    fresh_replay = fake.sign(body)  # the same event again, freshly signed: accepted, dedupe by id
    assert parse(fresh_replay).event_id == parse(genuine).event_id


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"object": "event"}', json.dumps({"id": "evt_1"}).encode(), b"\xff"],
)
async def test_a_signed_body_that_is_not_an_event_is_refused(payload: bytes) -> None:
    delivery = FakeStripe().sign(payload)
    with pytest.raises(StripeWebhookInvalid):
        parse(delivery)


# --- identity ---------------------------------------------------------------------------------


async def test_an_identity_check_starts_and_its_verdicts_arrive(
    identity: StripeIdentity, fake: FakeStripe, base: str
) -> None:
    session = await identity.start_verification(
        "RN-41", "https://rent.example.com/id/done", key="identity-RN-41-1"
    )

    assert session.session_id.startswith("vs_")
    assert session.url == f"{base}/verify/{session.session_id}"
    assert fake.identity_params[session.session_id] == {
        "type": "document",
        "client_reference_id": "RN-41",
        "metadata": {"renter": "RN-41"},
        "return_url": "https://rent.example.com/id/done",
    }
    [call] = fake.posts("/v1/identity/verification_sessions")
    assert call.idempotency_key == "identity-RN-41-1"

    retry = parse(fake.identity_needs_input(session.session_id))
    assert (retry.kind, retry.booking_reference, retry.object_id) == (
        PaymentEventKind.IDENTITY_NEEDS_INPUT,
        "RN-41",
        session.session_id,
    )
    verified = parse(fake.verify_identity(session.session_id))
    assert (verified.kind, verified.booking_reference) == (
        PaymentEventKind.IDENTITY_VERIFIED,
        "RN-41",
    )


async def test_identity_with_a_bad_key_is_refused(base: str) -> None:
    provider = StripeIdentity("sk_test_nope", api_base=base, max_network_retries=0)
    try:
        with pytest.raises(PaymentRefused, match="401"):
            await provider.start_verification("RN-1", "https://x.example/done", key="k")
    finally:
        await provider.close()
