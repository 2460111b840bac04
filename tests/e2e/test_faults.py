"""Outside services failing during a rental: each provider answering 5xx, hanging, or slow.

The journeys of ``test_channel_journeys`` run again with one provider broken at the step that
needs it: Twilio or Telegram when the PIN goes out, Stripe when the deposit hold is released,
the simulated lock and Seam when the codes are programmed. While a provider is down the effect
is retried with backoff (the injected clock is moved past it) and ops gets ONE open
``effect_failing`` alert; once the provider answers again the rental completes, the alert is
resolved, and what the fakes recorded shows every message and every code made exactly once.
A slow provider delays the step and nothing more.

Then webhook storms: one Stripe event 20 times at once, Twilio retrying one MessageSid and
Telegram re-delivering one update_id, each with one effect.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

import pytest

from bot.app import READINESS
from bot.dispatcher import RetryPolicy
from bot.transports.twilio_routes import EMPTY_TWIML
from flows.access import SET_EFFECT
from flows.booking import RELEASE_EFFECT
from locks import CodeRequest, LockProvider, LockUnavailable, ProgrammedCode
from locks.seam import SeamLockProvider
from locks.simulated import SimulatedLockProvider
from storage import db
from storage.models import (
    AccessCode,
    AccessCodeState,
    AuditEvent,
    Booking,
    BookingState,
    EffectState,
    Lock,
    Message,
    OpsAlert,
    OutboxEffect,
    Payment,
    ProcessedWebhook,
    SimulatedCode,
)
from tests.e2e.test_channel_journeys import (
    END,
    PHONE,
    START,
    ChatRenter,
    TelegramRenter,
    TwilioRenter,
    World,
    booked_and_linked,
    check_out,
    get_the_pin_and_open,
    pay_and_prove_identity,
    returned_by_chat,
    world,
)
from tests.fakes.seam import API_KEY as SEAM_API_KEY
from tests.fakes.seam import FakeSeam
from tests.fakes.server import running
from tests.fakes.stripe import FakeStripe
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio
from tests.integration.ops_harness import Ops, ops_app

OPS_PUBLIC_URL = "https://keyturn.example"  # the ops harness's public URL

__all__ = ["world"]  # the fixture, imported for these tests

Mode = Literal["5xx", "hang", "slow"]
MODES: tuple[Mode, ...] = ("5xx", "hang", "slow")
#: A hung call is given up after this long (the dispatcher's per-effect timeout, shortened so
#: that a hang costs the test little wall time; otherwise the effect timeout stays as it is).
HANG_TIMEOUT = 0.4
#: A slow provider answers after this long: slower than usual, well inside any timeout.
SLOW_SECONDS = 0.05
#: A hung call is never answered while the test runs (the fakes release it when they stop).
HANG_SECONDS = 120.0
#: Failed attempts until ops is alerted.
ATTEMPTS_BEFORE_ALERT = RetryPolicy().alert_after


class Outage:
    """A provider's fake made to fail (5xx), hang or answer slowly, until ``recover``.

    The fakes fail or hang "the next N calls"; a provider that is down fails every call until
    it comes back, so N is large and ``recover`` drops what is left of it.
    """

    def __init__(self, fake: FakeTwilio | FakeStripe | FakeSeam | FakeTelegram, mode: Mode):
        self.fake = fake
        self.mode = mode
        count = 1 if mode == "slow" else 1000
        if isinstance(fake, FakeTelegram):
            if mode == "slow":
                _slow_down_once(fake)
            for _ in range(count if mode != "slow" else 0):
                if mode == "5xx":
                    fake.fail_next("sendMessage", status=502, description="Bad Gateway")
                else:
                    fake.hang_next("sendMessage")
        elif mode == "5xx":
            fake.fail_next(count, status=503)
        else:
            fake.hang_next(count, seconds=HANG_SECONDS if mode == "hang" else SLOW_SECONDS)

    def recover(self) -> None:
        fake = self.fake
        if isinstance(fake, FakeTelegram):
            fake._faults.clear()
        else:
            fake._failures.clear()
            fake._hangs = 0


def _slow_down_once(fake: FakeTelegram) -> None:
    """The Bot API fake has no "slow" switch: its sendMessage answers late once."""
    methods: dict[str, Callable[[Any], Awaitable[Any]]] = fake._methods
    send = methods["sendmessage"]

    async def slow_once(call: Any) -> Any:
        methods["sendmessage"] = send
        await asyncio.sleep(SLOW_SECONDS)
        return await send(call)

    methods["sendmessage"] = slow_once


async def open_failing_alerts() -> list[OpsAlert]:
    return await OpsAlert.filter(kind="effect_failing", resolved_at__isnull=True)


async def ride_out(world: World, outage: Outage | FlakyLock, kind: str) -> None:
    """The workers keep running as time passes, through the outage and past the recovery.

    The first attempt has already been made. Down: ops is alerted after the fifth failure, while
    the effect is still pending; the provider recovers, and the alert is resolved when the next
    attempt goes through. Slow: the first attempt went through and nobody was bothered.
    """
    if outage.mode == "slow":
        assert await open_failing_alerts() == []
        assert await OpsAlert.filter(kind="effect_failing").count() == 0
        assert not await OutboxEffect.filter(kind=kind, state=EffectState.PENDING).exists()
        return
    for _ in range(ATTEMPTS_BEFORE_ALERT + 2):
        if await open_failing_alerts():
            break
        [pending] = await OutboxEffect.filter(kind=kind, state=EffectState.PENDING)
        assert pending.attempts < ATTEMPTS_BEFORE_ALERT, "down long enough, and nobody told"
        world.clock.advance(timedelta(minutes=1))  # past the backoff (2 s, 4 s, ... 32 s)
        await world.run()
    [alert] = await open_failing_alerts()
    assert alert.params["kind"] == kind and alert.params["attempts"] == ATTEMPTS_BEFORE_ALERT
    [pending] = await OutboxEffect.filter(kind=kind, state=EffectState.PENDING)
    assert pending.attempts == ATTEMPTS_BEFORE_ALERT and pending.alerted
    if outage.mode == "hang":
        assert "Timeout" in pending.last_error, pending.last_error

    outage.recover()
    world.clock.advance(timedelta(minutes=2))  # past the sixth backoff (at most 64 s)
    await world.run()
    await pending.refresh_from_db()
    assert (pending.state, pending.attempts) == (EffectState.DONE, ATTEMPTS_BEFORE_ALERT + 1)
    await alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolved_by == "dispatcher"
    assert await open_failing_alerts() == []


def break_provider(
    world: World, fake: FakeTwilio | FakeStripe | FakeSeam | FakeTelegram, mode: Mode
) -> Outage:
    if mode == "hang":
        world.runtime.dispatcher.effect_timeout = HANG_TIMEOUT
    return Outage(fake, mode)


async def confirmed_booking(world: World, renter: ChatRenter) -> Booking:
    await renter.say("BOOK T1 tomorrow 10-14")
    _, link = await renter.say("YES")
    return await pay_and_prove_identity(world, renter, link)


async def finish(world: World, renter: ChatRenter, booking: Booking, pin: str) -> None:
    """From inside the window to check-out; each message arrives once."""
    await world.at(START + timedelta(minutes=5))
    await booking.refresh_from_db()
    assert booking.state == BookingState.ACTIVE
    bay = await Lock.get(key="harbor-t1")
    assert await world.keypad().try_keypad(bay.device_id, pin, world.clock.now())
    await world.at(END - timedelta(minutes=30))
    [ending] = await renter.inbox()
    assert "EXTEND" in ending
    await world.at(END)
    [thank_you] = await renter.inbox()
    assert "Thank you for renting with us!" in thank_you
    await check_out(world, booking, pin, renter)


def the_pin(pin_message: str) -> str:
    assert "Main gate: " in pin_message and "Trailer Bay 1: " in pin_message, pin_message
    [pin] = {str(found) for found in re.findall(r": (\d{6})\b", pin_message)}
    return pin


# -- the channels: the PIN goes out while Twilio or Telegram is down ---------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channel", ["sms", "telegram"])
async def test_the_pin_reaches_the_renter_once_after_a_channel_outage(
    world: World, channel: str, mode: Mode
) -> None:
    renter: ChatRenter = TwilioRenter(world) if channel == "sms" else TelegramRenter(world)
    booking = await confirmed_booking(world, renter)
    await world.at(START - timedelta(hours=2))
    assert await renter.inbox() == []
    outage = break_provider(world, world.twilio if channel == "sms" else world.telegram, mode)

    await world.at(START - timedelta(hours=1))
    if mode != "slow":
        assert await renter.inbox() == [], "nothing got through while the channel was down"
        [stored] = await Message.filter(direction="out", status="queued")
        assert stored.sealed, "a queued PIN is kept encrypted"
        assert "Your door codes" in world.runtime.journey.sealer.open(stored.body)
    await ride_out(world, outage, "send_message")
    [pin_message] = await renter.inbox()
    pin = the_pin(pin_message)
    assert await Message.filter(direction="out", status="queued").count() == 0
    if isinstance(renter, TwilioRenter):
        assert len([m for m in world.twilio.sent if m.body and pin in m.body]) == 1
        attempts = [r for r in world.twilio.requests if pin in r.get("Body", "")]
        assert len(attempts) == (1 if mode == "slow" else ATTEMPTS_BEFORE_ALERT + 1)
        assert len({r["Body"] for r in attempts}) == 1, "the same message, tried again"
    else:
        delivered = [m for m in world.telegram.sent(renter.chat_id) if pin in str(m["text"])]
        assert len(delivered) == 1
    await finish(world, renter, booking, pin)
    assert await open_failing_alerts() == []


# -- Stripe: the deposit hold is released while Stripe is down --------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_deposit_is_released_once_after_a_stripe_outage(world: World, mode: Mode) -> None:
    renter = TwilioRenter(world)
    booking = await confirmed_booking(world, renter)
    pin = await get_the_pin_and_open(world, renter, booking)
    await world.at(END - timedelta(minutes=30))
    await renter.inbox()
    await world.at(END)
    [thank_you] = await renter.inbox()
    assert "Thank you for renting with us!" in thank_you, "the renter is not kept waiting"
    await world.at(END + timedelta(minutes=15))
    codes = await AccessCode.filter(booking=booking)
    assert {c.state for c in codes} == {AccessCodeState.REMOVED}
    bay = await Lock.get(key="harbor-t1")
    assert not await world.keypad().try_keypad(bay.device_id, pin, END + timedelta(minutes=10))
    returned = END + timedelta(minutes=20)
    await returned_by_chat(world, renter, booking, returned)
    review_over = returned + world.runtime.journey.settings.returns.damage_review
    await world.at(review_over - timedelta(minutes=1))
    assert await renter.inbox() == []

    outage = break_provider(world, world.stripe, mode)
    await world.at(review_over)
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.provider_ref is not None
    if mode != "slow":
        assert deposit.status == "held"
        assert world.stripe.payment_intents[deposit.provider_ref]["status"] == "requires_capture"
        assert await renter.inbox() == [], "no receipt before Stripe released the hold"
    await ride_out(world, outage, RELEASE_EFFECT)

    await deposit.refresh_from_db()
    assert deposit.status == "released"
    assert world.stripe.payment_intents[deposit.provider_ref]["status"] == "canceled"
    cancels = world.stripe.posts(f"/v1/payment_intents/{deposit.provider_ref}/cancel")
    assert len(cancels) == 1 if mode == "slow" else len(cancels) > ATTEMPTS_BEFORE_ALERT
    assert {c.idempotency_key for c in cancels} == {f"release:{booking.reference}"}, (
        "every retry carries the same key, so Stripe cancels the hold once"
    )
    assert world.stripe.refunds == {} and world.stripe.posts("/v1/refunds") == []
    [receipt] = await renter.inbox()
    assert "Deposit of $100.00: released" in receipt
    await world.run()
    assert await renter.inbox() == [], "no message twice"


# -- the locks: codes are programmed while the lock cloud is down ------------------------------


class FlakyLock:
    """The simulated lock behind a failing link: the next calls to create a code on one device
    fail (the cloud answers an error), never answer, or answer late."""

    def __init__(self, inner: SimulatedLockProvider, device_id: str, mode: Mode) -> None:
        self.inner = inner
        self.device_id = device_id
        self.mode = mode
        self.faults_left = 1 if mode == "slow" else 1000
        self.creates = 0

    def recover(self) -> None:
        self.faults_left = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create_code(self, request: CodeRequest) -> ProgrammedCode:
        if request.device_id == self.device_id and self.faults_left > 0:
            self.faults_left -= 1
            if self.mode == "5xx":
                raise LockUnavailable("the lock cloud answered 503")
            await asyncio.sleep(HANG_SECONDS if self.mode == "hang" else SLOW_SECONDS)
        self.creates += request.device_id == self.device_id
        return await self.inner.create_code(request)


@pytest.mark.parametrize("mode", MODES)
async def test_codes_are_set_once_after_a_simulated_lock_outage(world: World, mode: Mode) -> None:
    renter = TwilioRenter(world)
    keypad = world.keypad()
    bay = await Lock.get(key="harbor-t1")
    flaky = FlakyLock(keypad, bay.device_id, mode)
    if mode == "hang":
        world.runtime.dispatcher.effect_timeout = HANG_TIMEOUT
    world.runtime.locks["simulated"] = cast(LockProvider, flaky)
    booking = await confirmed_booking(world, renter)
    codes = {c.lock_id: c for c in await AccessCode.filter(booking=booking)}
    if mode != "slow":
        assert codes[bay.id].state == AccessCodeState.PROGRAMMING
    await ride_out(world, flaky, SET_EFFECT)
    world.runtime.locks["simulated"] = keypad
    assert flaky.creates == 1
    assert await SimulatedCode.filter(device_id=bay.device_id).count() == 1, "created once"
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.SET}
    pin = await get_the_pin_and_open(world, renter, booking)
    await world.at(END - timedelta(minutes=30))
    await renter.inbox()
    await world.at(END)
    await renter.inbox()
    await check_out(world, booking, pin, renter)


@pytest.fixture
async def seam(world: World) -> AsyncIterator[tuple[FakeSeam, str]]:
    """The Trailer Bay 1 lock moved to a Seam device on the fake Seam API."""
    fake = FakeSeam(now=world.clock.now)
    fake.program_immediately = True  # a quick lock: set before Seam answers
    device = fake.add_device(name="Trailer Bay 1", code_constraints=())
    async with running(fake.app()) as base:
        provider = SeamLockProvider(SEAM_API_KEY, base_url=base, timeout=5)
        world.runtime.locks["seam"] = provider
        await Lock.filter(key="harbor-t1").update(provider="seam", device_id=device)
        try:
            yield fake, device
        finally:
            await provider.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_codes_are_set_once_after_a_seam_outage(
    world: World, seam: tuple[FakeSeam, str], mode: Mode
) -> None:
    fake, device = seam
    renter = TwilioRenter(world)
    outage = break_provider(world, fake, mode)
    booking = await confirmed_booking(world, renter)
    await ride_out(world, outage, SET_EFFECT)
    [seam_code] = fake.access_codes.values()
    assert (seam_code["device_id"], seam_code["status"]) == (device, "set"), "created once"
    bay = await Lock.get(key="harbor-t1")
    code = await AccessCode.get(booking=booking, lock=bay)
    assert (code.state, code.provider_ref) == (AccessCodeState.SET, seam_code["access_code_id"])

    await world.at(START - timedelta(hours=1))
    [pin_message] = await renter.inbox()
    pin = the_pin(pin_message)
    assert seam_code["code"] == pin
    assert seam_code["starts_at"].startswith("2026-06-02T13:45"), "the window, buffer included"
    await world.at(START + timedelta(minutes=5))
    await world.at(END)
    [_, thank_you] = await renter.inbox()
    assert "Thank you for renting with us!" in thank_you
    await world.at(END + timedelta(minutes=15))
    assert seam_code["status"] == "removing", "Keyturn asked Seam to take the code off"
    await code.refresh_from_db()
    assert code.state == AccessCodeState.REMOVING, "until Seam confirms it is off the lock"
    fake.program()  # the lock takes it off
    await world.at(END + timedelta(minutes=20))
    assert {c.state for c in await AccessCode.filter(booking=booking)} == {AccessCodeState.REMOVED}
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    assert await open_failing_alerts() == []


# -- webhook storms ---------------------------------------------------------------------------


async def test_one_stripe_event_delivered_20_times_at_once_has_one_effect(world: World) -> None:
    renter = TwilioRenter(world)
    booking, session_id = await booked_and_linked(world, renter)
    delivery = world.stripe.complete(session_id)
    statuses = await asyncio.gather(*(world.stripe_webhook(delivery) for _ in range(20)))
    assert set(statuses) == {200}
    [ask_id] = await renter.inbox()
    assert "photo of your ID" in ask_id
    event_id = json.loads(delivery.body)["id"]
    assert await ProcessedWebhook.filter(provider="stripe", event_id=event_id).count() == 1
    assert await AuditEvent.filter(action="booking.paid").count() == 1
    assert await OutboxEffect.filter(kind="payment.hold_deposit").count() == 1
    holds = [i for i in world.stripe.payment_intents.values() if i["capture_method"] == "manual"]
    assert len(holds) == 1
    assert await Payment.filter(booking=booking, purpose="deposit").count() == 1
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_ID


async def test_twilio_retrying_one_message_sid_is_one_turn(world: World) -> None:
    renter = TwilioRenter(world)
    form, headers = world.twilio.inbound(from_=renter.sender, body="BOOK T1 tomorrow 10-14")
    # Twilio retries when our answer is late: the same MessageSid, sequentially and overlapping.
    responses = await asyncio.gather(
        *(world.client.post("/webhooks/twilio", data=form, headers=headers) for _ in range(5))
    )
    for _ in range(3):
        responses.append(await world.client.post("/webhooks/twilio", data=form, headers=headers))
    assert {r.status for r in responses} == {200}
    [quote] = await renter.inbox()
    assert "Reply YES" in quote
    assert await Message.filter(direction="in").count() == 1
    assert await Message.filter(direction="out").count() == 1
    assert len(world.twilio.sent) == 1


async def test_telegram_redelivering_one_update_is_one_turn(world: World) -> None:
    renter = TelegramRenter(world)
    update = world.telegram.text_update(renter.user, "BOOK T1 tomorrow 10-14")
    statuses = await asyncio.gather(*(renter.post(update) for _ in range(5)))
    statuses += [await renter.post(update) for _ in range(3)]
    assert set(statuses) == {200}
    [quote] = await renter.inbox()
    assert "$50.00" in quote
    assert await Message.filter(direction="in").count() == 1
    assert await Message.filter(direction="out").count() == 1
    assert len(world.telegram.sent(renter.chat_id)) == 1


# -- the database cannot write (a full disk) --------------------------------------------------


async def _disk_full(full: bool) -> None:
    """SQLite's file may not grow past its size now, as on a full disk (``SQLITE_FULL``)."""
    if full:
        await db.connection().execute_script("VACUUM")  # no free pages left to fill first
    await db.connection().execute_script(f"PRAGMA max_page_count = {1 if full else 1 << 30}")


async def test_a_full_disk_fails_readiness_asks_renters_to_resend_and_alerts_ops_once(
    tmp_path: Path, sqlite_template: Path
) -> None:
    twilio = FakeTwilio(public_url=OPS_PUBLIC_URL)
    async with twilio.serving(), ops_app(tmp_path, sqlite_template, twilio=twilio) as ops:
        ops.client.app[READINESS].ttl = 0  # every probe looks again
        assert (await ops.client.get("/readyz")).status == 200
        await _disk_full(True)
        ready = await ops.client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["status"] == "database cannot write"

        # The disk fills up as messages keep coming, until one cannot be stored.
        sorry = (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Sorry, we could not take'
            " your message just now. Please send it again in a few minutes.</Message>"
            "</Response>"
        )
        stored_before = -1
        for attempt in range(200):
            stored_before = await Message.filter(direction="in").count()
            if await _twilio_answer(ops, twilio, f"hello {attempt}") == sorry:
                break
        else:
            raise AssertionError("the disk never filled up")
        for text in ("BOOK T1 tomorrow 10-14", "hello?", "anyone?"):
            assert await _twilio_answer(ops, twilio, text) == sorry
        assert await Message.filter(direction="in").count() == stored_before, "none was stored"
        assert ops.runtime.failing_turns is not None
        await ops.runtime.failing_turns.wait()
        [alert] = [m for m in ops.ops_messages() if "Renter messages are failing" in m["text"]]
        assert "3 in a row" in alert["text"] and "database or disk is full" in alert["text"]
        assert await OpsAlert.filter(kind="turns_failing").count() == 0, "nowhere to store it"

        await _disk_full(False)
        assert (await ops.client.get("/readyz")).status == 200
        assert await _twilio_answer(ops, twilio, "BOOK T1 tomorrow 10-14") == EMPTY_TWIML
        await ops.runtime.failing_turns.wait()
        await ops.deliver()
        [recorded] = await OpsAlert.filter(kind="turns_failing")
        assert recorded.resolved_at is not None and recorded.params["count"] == 3
        assert recorded.telegram_message_id == alert["message_id"]
        [shown] = [m for m in ops.ops_messages() if "Renter messages are failing" in m["text"]]
        assert shown["message_id"] == alert["message_id"], "the same message, edited"
        assert shown["text"].startswith("✅") and "Resolved" in shown["text"], shown["text"]
        latest = await Message.filter(direction="in").order_by("-id").first()
        assert latest is not None and latest.body == "BOOK T1 tomorrow 10-14", "stored"
        assert twilio.sent[-1].to == PHONE, "and answered"


async def _twilio_answer(ops: Ops, twilio: FakeTwilio, text: str) -> str:
    form, headers = twilio.inbound(from_=PHONE, body=text)
    response = await ops.client.post("/webhooks/twilio", data=form, headers=headers)
    assert response.status == 200, "Twilio is answered, never left with a 500"
    return await response.text()
