"""A whole rental on each real channel: SMS, WhatsApp and Telegram against the fake Twilio, Telegram
Bot API and Stripe servers and the simulated locks, driven only by signed webhooks and the
injected clock: book, pay, send an ID, get the PIN, open the keypad, and check out with the codes
removed; the deposit hold is released at Stripe only once the return is confirmed and its damage
review is over, and the receipt follows. Then the branches this setup makes cheap:
repeated and out-of-order Stripe events, a payment after the hold expired, a forged Twilio
signature, an ID file Keyturn cannot use, and two renters racing for one slot."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.backends.base.client import BaseDBAsyncClient

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.payments import StripePayments
from bot.transports.telegram_routes import SECRET_HEADER, WEBHOOK_PATH
from flows.effects import Outcome
from flows.inventory import apply_inventory, load_inventory
from flows.returns import note_return_checklist
from flows.staging import run_unit
from locks.simulated import SimulatedLockProvider
from storage import db
from storage.models import (
    SLOT_HOLDING_STATES,
    AccessCode,
    AccessCodeState,
    AuditEvent,
    Booking,
    BookingState,
    Conversation,
    IdentityCheck,
    Lock,
    Message,
    OpsAlert,
    OutboxEffect,
    Payment,
    ProcessedWebhook,
    Renter,
)
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe, WebhookDelivery
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    SMS_NUMBER,
    WHATSAPP_NUMBER,
    FakeTwilio,
    SentMessage,
)

NOW = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # Monday 12:00 at Harbor Yard (New York)
START = datetime(2026, 6, 2, 14, 0, tzinfo=UTC)  # Tuesday 10:00 there
END = datetime(2026, 6, 2, 18, 0, tzinfo=UTC)  # Tuesday 14:00 there
PUBLIC_URL = "https://keyturn.example.com"
TELEGRAM_SECRET = "kt-webhook_5f2a9c0e1d"
REMINDER_TEMPLATE = "HX" + "b2" * 16
PIN_TEMPLATE = "HX" + "c3" * 16
PHONE = "+15550100001"
OTHER_PHONE = "+15550100002"
CHAT_ID = 4242
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 20
GIF = b"GIF89a" + b"\x00" * 200
PDF = b"%PDF-1.7\n" + b"\x00" * 200
PRICE = 5000  # T1 for four hours
DEPOSIT = 10000


@dataclass
class World:
    client: TestClient[Any, Any]
    runtime: Runtime
    clock: FakeClock
    twilio: FakeTwilio
    telegram: FakeTelegram
    stripe: FakeStripe

    async def run(self) -> None:
        """What the workers would do now: due timers, then the effects they and turns staged."""
        for _ in range(4):
            await self.runtime.timers.run_due()
            await self.runtime.dispatcher.run_once()

    async def stripe_webhook(self, delivery: WebhookDelivery) -> int:
        response = await self.client.post(
            "/webhooks/stripe", data=delivery.body, headers=delivery.headers
        )
        return response.status

    async def at(self, moment: datetime) -> None:
        self.clock.current = moment
        await self.run()

    def stripe_base(self) -> str:
        settings = self.runtime.settings.stripe
        assert settings is not None and settings.api_base is not None
        return settings.api_base

    def keypad(self) -> SimulatedLockProvider:
        provider = self.runtime.locks["simulated"]
        assert isinstance(provider, SimulatedLockProvider)
        return provider


@pytest.fixture
async def world(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[World]:
    async with channel_world(sqlite_template, tmp_path) as started:
        yield started


@asynccontextmanager
async def channel_world(
    sqlite_template: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> AsyncIterator[World]:
    """The world, with ``env`` added to its settings (an ops chat, say)."""
    path = tmp_path / "channels.sqlite3"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    clock = FakeClock(NOW)
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    await db.close_database()
    twilio = FakeTwilio(public_url=PUBLIC_URL)
    telegram = FakeTelegram()
    stripe = FakeStripe(now=clock.now)
    async with (
        twilio.serving(),
        running(telegram.web_app()) as telegram_base,
        running(stripe.app()) as stripe_base,
    ):
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": url,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "KEYTURN_PUBLIC_URL": PUBLIC_URL,
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_SMS_FROM": SMS_NUMBER,
                "TWILIO_WHATSAPP_FROM": WHATSAPP_NUMBER,
                "TWILIO_WHATSAPP_TEMPLATES": f"reminder={REMINDER_TEMPLATE},pin={PIN_TEMPLATE}",
                "TWILIO_API_BASE": twilio.base_url,
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
                "TELEGRAM_API_BASE": telegram_base,
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STRIPE_API_BASE": stripe_base,
                **(env or {}),
            }
        )
        assert settings.stripe is not None
        # build_runtime would build the same adapter, but on the wall clock; Checkout expiries
        # must be checked on the injected one, which the fake Stripe also runs on.
        payments = StripePayments(
            settings.stripe.api_key, api_base=settings.stripe.api_base, now=clock.now
        )
        runtime = build_runtime(settings, clock=clock, payments=payments)
        app = create_app(runtime, workers=False)
        try:
            async with TestClient(TestServer(app)) as client:
                yield World(client, runtime, clock, twilio, telegram, stripe)
        finally:
            await payments.close()


# -- renters on each channel ------------------------------------------------------------------


class TwilioRenter:
    """A phone writing by SMS or WhatsApp; sees what the fake Twilio delivered to it."""

    def __init__(self, world: World, phone: str = PHONE, *, whatsapp: bool = False) -> None:
        self.world = world
        self.phone = phone
        self.sender = f"whatsapp:{phone}" if whatsapp else phone
        self.seen = 0
        self.latest: list[SentMessage] = []

    async def post(self, text: str = "", media: Sequence[tuple[str, str]] = ()) -> ClientResponse:
        form, headers = self.world.twilio.inbound(from_=self.sender, body=text, media=media)
        return await self.world.client.post("/webhooks/twilio", data=form, headers=headers)

    async def say(self, text: str) -> list[str]:
        response = await self.post(text)
        assert response.status == 200, await response.text()
        return await self.inbox()

    async def send_id(self, content: bytes = JPEG, content_type: str = "image/jpeg") -> list[str]:
        url = self.world.twilio.add_media(content, content_type)
        response = await self.post(media=[(url, content_type)])
        assert response.status == 200
        return await self.inbox()

    async def inbox(self) -> list[str]:
        """Run the workers, then the texts that reached this phone since the last look."""
        await self.world.run()
        mine = [m for m in self.world.twilio.sent if m.to in (self.sender, self.phone)]
        self.latest = mine[self.seen :]
        self.seen = len(mine)
        return [m.body or "" for m in self.latest]


class TelegramRenter:
    """A Telegram user in a private chat with the bot; sees what the fake Bot API delivered."""

    def __init__(self, world: World, chat_id: int = CHAT_ID) -> None:
        self.world = world
        self.chat_id = chat_id
        self.user = world.telegram.private_chat(chat_id, "Ada", last_name="Lovelace")
        self.seen = 0
        self.latest: list[dict[str, Any]] = []

    async def post(self, update: dict[str, Any], secret: str = TELEGRAM_SECRET) -> int:
        response = await self.world.client.post(
            WEBHOOK_PATH, json=update, headers={SECRET_HEADER: secret}
        )
        return response.status

    async def say(self, text: str) -> list[str]:
        assert await self.post(self.world.telegram.text_update(self.user, text)) == 200
        return await self.inbox()

    async def press(self, *, label: str | None = None, data: str | None = None) -> list[str]:
        update = self.world.telegram.callback_update(self.user, label=label, data=data)
        assert await self.post(update) == 200
        query_id = update["callback_query"]["id"]
        assert self.world.telegram.callback_queries[query_id], "the button's spinner stopped"
        return await self.inbox()

    async def send_id(self, content: bytes = JPEG) -> list[str]:
        assert await self.post(self.world.telegram.photo_update(self.user, content)) == 200
        return await self.inbox()

    async def send_document(self, content: bytes, mime_type: str, file_name: str) -> list[str]:
        update = self.world.telegram.document_update(
            self.user, content, mime_type=mime_type, file_name=file_name
        )
        assert await self.post(update) == 200
        return await self.inbox()

    async def inbox(self) -> list[str]:
        await self.world.run()
        mine = self.world.telegram.sent(self.chat_id)
        self.latest = mine[self.seen :]
        self.seen = len(mine)
        return [str(m["text"]) for m in self.latest]

    def buttons(self, index: int = -1) -> list[tuple[str, str]]:
        rows = self.latest[index].get("reply_markup", {}).get("inline_keyboard", [])
        return [(b["text"], b["callback_data"]) for row in rows for b in row]


ChatRenter = TwilioRenter | TelegramRenter


def checkout_session(world: World, link_text: str) -> str:
    """The Checkout Session in a payment-link message; the link must be the fake Stripe's page."""
    match = re.search(r"(https?://\S+)/pay/(cs_test_\w+)", link_text)
    assert match, link_text
    assert match.group(1) == world.stripe_base()
    return match.group(2)


async def pay_and_prove_identity(world: World, renter: ChatRenter, link_text: str) -> Booking:
    """From the payment link to a confirmed booking: Stripe Checkout, deposit hold, ID review."""
    booking = await Booking.get()
    assert booking.state == BookingState.AWAITING_PAYMENT
    assert (booking.start_at, booking.end_at) == (START, END)
    session_id = checkout_session(world, link_text)
    created = world.stripe.session_params[session_id]
    assert created["client_reference_id"] == booking.reference
    assert created["metadata"]["booking"] == booking.reference
    [call] = world.stripe.posts("/v1/checkout/sessions")
    assert call.idempotency_key == f"checkout:{booking.reference}"
    session = world.stripe.sessions[session_id]
    assert session["amount_total"] == PRICE and session["currency"] == "usd"
    # Stripe's minimum 30 minutes past the renter's hold: Keyturn expires it when the hold ends.
    assert booking.hold_expires_at is not None
    expires = datetime.fromtimestamp(session["expires_at"], UTC)
    assert expires == booking.hold_expires_at.replace(microsecond=0) + timedelta(minutes=30)

    assert await world.stripe_webhook(world.stripe.complete(session_id)) == 200
    [ask_id] = await renter.inbox()
    assert f"Payment received for {booking.reference}" in ask_id and "photo of your ID" in ask_id
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_ID
    rental = await Payment.get(booking=booking, purpose="rental")
    assert rental.status == "paid" and rental.provider_ref == session_id
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "held" and deposit.amount_cents == DEPOSIT
    assert deposit.provider_ref is not None
    hold = world.stripe.payment_intents[deposit.provider_ref]
    assert (hold["status"], hold["capture_method"], hold["amount"]) == (
        "requires_capture",
        "manual",
        DEPOSIT,
    )
    assert hold["customer"] == world.stripe.sessions[session_id]["customer"]

    [thanks] = await renter.send_id()
    assert "checking your ID" in thanks
    check = await IdentityCheck.get(booking=booking)
    assert check.status == "pending" and check.document_encrypted is not None
    assert await approve(world, check.id)
    await check.refresh_from_db()
    assert check.status == "approved" and check.document_encrypted is None
    [confirmed] = await renter.inbox()
    assert f"Booking {booking.reference} is confirmed" in confirmed
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    return booking


async def approve(world: World, check_id: int) -> bool:
    """An operator approves the ID: the decision and what follows from it commit together."""
    journey = world.runtime.journey
    now = world.clock.now()

    async def decide(conn: BaseDBAsyncClient) -> Outcome:
        outcome = await journey.review_identity(
            conn, check_id, approved=True, reviewer="test", now=now
        )
        decided.append(outcome is not None)
        return outcome or Outcome()

    decided: list[bool] = []
    await run_unit(decide, now)
    return decided == [True]


async def get_the_pin_and_open(world: World, renter: ChatRenter, booking: Booking) -> str:
    """The PIN arrives before the window and opens the keypads only inside it."""
    gate = await Lock.get(key="harbor-gate")
    bay = await Lock.get(key="harbor-t1")
    await world.at(START - timedelta(hours=2))
    assert await renter.inbox() == [], "not yet: the PIN goes out an hour before the window"
    await world.at(START - timedelta(hours=1))
    [pin_message] = await renter.inbox()
    assert f"Your door codes for booking {booking.reference}" in pin_message
    assert "Main gate: " in pin_message and "Trailer Bay 1: " in pin_message
    assert "Tue, Jun 2 9:45\u202fAM" in pin_message, "the window, buffers included, local time"
    assert "sim-harbor" not in pin_message, "renters see lock labels, never device ids"
    pins = set(re.findall(r": (\d{6})\b", pin_message))
    assert len(pins) == 1, pin_message
    [pin] = pins
    keypad = world.keypad()
    assert not await keypad.try_keypad(bay.device_id, pin, world.clock.now()), "too early"

    await world.at(START + timedelta(minutes=5))
    await booking.refresh_from_db()
    assert booking.state == BookingState.ACTIVE
    assert await keypad.try_keypad(gate.device_id, pin, world.clock.now())
    assert await keypad.try_keypad(bay.device_id, pin, world.clock.now())
    assert not await keypad.try_keypad(bay.device_id, "000000", world.clock.now())
    return pin


async def return_confirmed(world: World, booking: Booking, returned: datetime) -> None:
    """The renter's return checklist is done at ``returned`` (the item has no GPS), recorded
    the way the dialog's runner records DONE."""
    world.clock.current = returned
    rules = world.runtime.journey.settings.returns

    async def done(conn: BaseDBAsyncClient) -> Outcome:
        return await note_return_checklist(conn, booking.id, returned, rules)

    await run_unit(done, returned)


async def returned_by_chat(
    world: World, renter: ChatRenter, booking: Booking, returned: datetime
) -> None:
    """The renter brings the item back at ``returned`` and says so in the chat: RETURN, then
    DONE once it is locked (T1 asks for no photos or checklist and has no tracker), and the
    return is confirmed by the checklist alone."""
    world.clock.current = returned
    *asked, intro, lock_it = await renter.say("RETURN")
    # Past the end and its grace, the renter was asked to bring it back (the not-returned check;
    # on WhatsApp, a day after their last message, that is a template, which carries no body).
    assert all(t == "" or "reply RETURN when it is back" in t for t in asked), asked
    assert len(asked) <= 1, asked
    assert intro == f"Returning Utility trailer 6x10 (booking {booking.reference})."
    assert lock_it == "Thank you. Now lock Utility trailer 6x10 and reply DONE."
    noted, confirmed = await renter.say("DONE")
    assert "noted" in noted and "confirmed" in confirmed, (noted, confirmed)
    await booking.refresh_from_db()
    assert booking.returned_at == returned


async def check_out(world: World, booking: Booking, pin: str, renter: ChatRenter) -> None:
    """At the end: completed and the codes removed after the buffer, but the deposit still
    held: the clock says nothing about the item. The return confirmed, and its damage review
    over, the hold is cancelled at Stripe and the renter gets the receipt."""
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "held" and deposit.provider_ref is not None
    assert world.stripe.posts(f"/v1/payment_intents/{deposit.provider_ref}/cancel") == []
    assert world.stripe.refunds == {}, "the rental itself is not refunded"
    bay = await Lock.get(key="harbor-t1")
    assert await world.keypad().try_keypad(bay.device_id, pin, END + timedelta(minutes=10)), (
        "the code still works during the buffer after the rental"
    )

    await world.at(END + timedelta(minutes=15))
    codes = await AccessCode.filter(booking=booking)
    assert len(codes) == 2
    assert {c.state for c in codes} == {AccessCodeState.REMOVED}
    assert not await world.keypad().try_keypad(bay.device_id, pin, END + timedelta(minutes=10))
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "held"

    returned = END + timedelta(minutes=20)
    await returned_by_chat(world, renter, booking, returned)
    rules = world.runtime.journey.settings.returns
    await world.at(returned + rules.damage_review - timedelta(minutes=1))
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "held"
    await world.at(returned + rules.damage_review)
    deposit = await Payment.get(booking=booking, purpose="deposit")
    assert deposit.status == "released"
    [cancel] = world.stripe.posts(f"/v1/payment_intents/{deposit.provider_ref}/cancel")
    assert cancel.idempotency_key == f"release:{booking.reference}"
    assert world.stripe.payment_intents[str(deposit.provider_ref)]["status"] == "canceled"
    [receipt] = await renter.inbox()
    assert f"Receipt for booking {booking.reference}:" in receipt
    assert "Price: $50.00" in receipt and "Deposit of $100.00: released" in receipt


async def every_stripe_event_again_changes_nothing(world: World, booking: Booking) -> None:
    """Stripe retries events for days and in any order: after check-out none of them (the
    deposit's ``amount_capturable_updated`` included) may move anything back."""
    messages = await Message.all().count()
    effects = await OutboxEffect.all().count()
    events = [e for e in world.stripe.events if not e["type"].endswith(".created")]
    assert {"checkout.session.completed", "payment_intent.amount_capturable_updated"} <= {
        e["type"] for e in events
    }
    for event in reversed(events):
        # Stripe re-sends an event under its own id; a fresh id is what a first delivery of a
        # late event looks like, so both are tried.
        assert await world.stripe_webhook(world.stripe.sign(event)) == 200
        late = {**event, "id": event["id"] + "late"}
        assert await world.stripe_webhook(world.stripe.sign(late)) == 200
    await world.run()
    await booking.refresh_from_db()
    assert booking.state == BookingState.COMPLETED
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "released"
    assert (await Payment.get(booking=booking, purpose="rental")).status == "paid"
    assert await Message.all().count() == messages
    assert await OutboxEffect.all().count() == effects


# -- a whole rental per channel ---------------------------------------------------------------


async def test_a_whole_rental_over_sms(world: World) -> None:
    renter = TwilioRenter(world)
    [greeting] = await renter.say("hi")
    assert greeting.startswith("Welcome to Keyturn!")
    assert greeting.splitlines()[-2:] == ["1. Altstadt Depot", "2. Harbor Yard"]
    [items] = await renter.say("2")
    assert "Items at Harbor Yard:" in items
    lines = items.splitlines()
    assert "2. T1 Utility trailer 6x10 · $12.50/hour · $60.00/day" in lines
    assert "0. Back" in lines[-1]
    [details] = await renter.say("2")
    assert "T1 Utility trailer 6x10 at Harbor Yard" in details
    [quote] = await renter.say("tomorrow 10am to 2pm")
    assert "From Tue, Jun 2 10:00\u202fAM" in quote and "Until Tue, Jun 2 2:00\u202fPM" in quote
    assert "$50.00" in quote and "$100.00" in quote and "Reply YES" in quote
    holding, link = await renter.say("YES")
    assert "holding T1 for you for 30 minutes" in holding
    assert link.startswith("Pay $50.00 here to confirm: ")
    assert {m.from_ for m in world.twilio.sent} == {SMS_NUMBER}

    booking = await pay_and_prove_identity(world, renter, link)
    pin = await get_the_pin_and_open(world, renter, booking)
    await world.at(END - timedelta(minutes=30))
    [ending] = await renter.inbox()
    assert "Your rental ends Tue, Jun 2 2:00\u202fPM" in ending and "EXTEND" in ending
    await world.at(END)
    [thank_you] = await renter.inbox()
    assert f"Thank you for renting with us! Booking {booking.reference} is complete" in thank_you
    await check_out(world, booking, pin, renter)
    assert {m.to for m in world.twilio.sent} == {PHONE}
    [pin_sent] = [m for m in world.twilio.sent if m.body and pin in m.body]
    for status in ("delivered", "sent"):  # callbacks come in any order; status never goes back
        form, headers = world.twilio.status_callback(pin_sent.sid, status)
        response = await world.client.post("/webhooks/twilio/status", data=form, headers=headers)
        assert response.status == 200
    assert (await Message.get(provider_id=pin_sent.sid)).status == "delivered"
    assert all(
        m.status_callback == f"{PUBLIC_URL}/webhooks/twilio/status" for m in world.twilio.sent
    )
    await every_stripe_event_again_changes_nothing(world, booking)


async def test_a_whole_rental_over_whatsapp(world: World) -> None:
    renter = TwilioRenter(world, whatsapp=True)
    [quote] = await renter.say("BOOK T1 tomorrow 10-14")
    assert "From Tue, Jun 2 10:00\u202fAM" in quote and "$50.00" in quote
    holding, link = await renter.say("yes")
    assert "holding T1" in holding
    assert all((m.to, m.from_) == (f"whatsapp:{PHONE}", WHATSAPP_NUMBER) for m in renter.latest)
    booking = await pay_and_prove_identity(world, renter, link)
    pin = await get_the_pin_and_open(world, renter, booking)
    [pin_sent] = [m for m in world.twilio.sent if m.body and pin in m.body]
    assert pin_sent.to == f"whatsapp:{PHONE}", "21 hours after the renter wrote: free-form text"

    # More than 24 hours after the renter's last message: WhatsApp takes templates only.
    await world.at(END - timedelta(minutes=30))
    [reminder] = await renter.inbox()
    assert reminder == ""
    [sent] = renter.latest
    assert (sent.to, sent.content_sid, sent.body) == (f"whatsapp:{PHONE}", REMINDER_TEMPLATE, None)
    await world.at(END)
    [thank_you] = await renter.inbox()
    assert "Thank you for renting with us!" in thank_you
    [sent] = renter.latest
    assert (sent.to, sent.from_) == (PHONE, SMS_NUMBER), "no template for it: sent by SMS"
    await check_out(world, booking, pin, renter)


async def test_a_whatsapp_pin_refused_outside_the_window_comes_again_by_template(
    world: World,
) -> None:
    renter = TwilioRenter(world, whatsapp=True)
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("yes")
    booking = await pay_and_prove_identity(world, renter, link)
    pin = await get_the_pin_and_open(world, renter, booking)
    [pin_sent] = [m for m in world.twilio.sent if m.body and pin in m.body]

    # Twilio accepted the free-form text; WhatsApp refused it later (63016).
    form, headers = world.twilio.window_closed(pin_sent.sid)
    response = await world.client.post("/webhooks/twilio/status", data=form, headers=headers)
    assert response.status == 200
    staged = await OutboxEffect.filter(idempotency_key__startswith="outside-window:").get()
    assert pin not in json.dumps(staged.payload), "the resend keeps the PIN sealed"
    await world.run()
    assert await renter.inbox() == [""], "a template has no body of ours"
    [resent] = renter.latest
    assert (resent.to, resent.content_sid, resent.body) == (
        f"whatsapp:{PHONE}",
        PIN_TEMPLATE,
        None,
    )
    variables = json.loads(resent.content_variables or "")
    assert set(variables) == {"1", "2", "3", "4"}
    assert variables["1"] == booking.reference and variables["2"] == pin
    assert variables["3"] == "Main gate, Trailer Bay 1"
    assert variables["4"].startswith("Tue, Jun 2 9:45\u202fAM")
    assert all("\n" not in value for value in variables.values()), "WhatsApp: one line each"
    stored = await Message.get(provider_id=resent.sid)
    assert stored.sealed and pin not in stored.body


async def test_a_whole_rental_over_telegram(world: World) -> None:
    renter = TelegramRenter(world)
    [greeting] = await renter.say("hello")
    assert greeting.startswith("Welcome to Keyturn!")
    assert renter.buttons() == [("Altstadt Depot", "1"), ("Harbor Yard", "2")]
    [items] = await renter.press(label="Harbor Yard")
    assert items == "Items at Harbor Yard:"
    buttons = renter.buttons()
    assert ("T1 Utility trailer 6x10 · $12.50/hour · $60.00/day", "2") in buttons
    assert buttons[-1] == ("Back", "0")
    [details] = await renter.press(data="2")
    assert "T1 Utility trailer 6x10 at Harbor Yard" in details
    [quote] = await renter.say("tomorrow 10am to 2pm")
    assert "From Tue, Jun 2 10:00\u202fAM" in quote and "$100.00" in quote
    assert renter.buttons() == [("YES", "YES"), ("NO", "NO")]
    holding, link = await renter.press(label="YES")
    assert "holding T1" in holding
    booking = await pay_and_prove_identity(world, renter, link)
    renter_row = await Renter.get(telegram_id=CHAT_ID)
    assert renter_row.name == "Ada Lovelace" and renter_row.verified_at == NOW
    [photo] = world.telegram.downloads
    assert photo.startswith("photos/"), "the largest size was fetched through getFile"
    pin = await get_the_pin_and_open(world, renter, booking)
    await world.at(END - timedelta(minutes=30))
    [ending] = await renter.inbox()
    assert "EXTEND" in ending
    await world.at(END)
    [thank_you] = await renter.inbox()
    assert "Thank you for renting with us!" in thank_you
    await check_out(world, booking, pin, renter)
    assert world.twilio.sent == []


# -- branches ---------------------------------------------------------------------------------


async def booked_and_linked(world: World, renter: ChatRenter) -> tuple[Booking, str]:
    await renter.say("BOOK T1 tomorrow 10-14")
    _, link = await renter.say("YES")
    return await Booking.get(), checkout_session(world, link)


async def test_one_stripe_event_delivered_twice_at_once_has_one_effect(world: World) -> None:
    renter = TwilioRenter(world)
    booking, session_id = await booked_and_linked(world, renter)
    delivery = world.stripe.complete(session_id)
    statuses = await asyncio.gather(world.stripe_webhook(delivery), world.stripe_webhook(delivery))
    assert statuses == [200, 200]
    [ask_id] = await renter.inbox()
    assert "photo of your ID" in ask_id
    event_id = json.loads(delivery.body)["id"]
    assert await ProcessedWebhook.filter(provider="stripe", event_id=event_id).count() == 1
    assert await AuditEvent.filter(action="booking.paid").count() == 1
    assert await OutboxEffect.filter(kind="payment.hold_deposit").count() == 1
    holds = [i for i in world.stripe.payment_intents.values() if i["capture_method"] == "manual"]
    assert len(holds) == 1
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_ID


async def test_checkout_expired_after_completed_changes_nothing(world: World) -> None:
    renter = TwilioRenter(world)
    booking, session_id = await booked_and_linked(world, renter)
    completed = world.stripe.complete(session_id)
    assert await world.stripe_webhook(completed) == 200
    await renter.inbox()
    # Stripe sends events in any order: an expiry about the session, late and out of place.
    stale = copy.deepcopy(json.loads(completed.body))
    stale.update(id="evt_1StaleExpiry000000000000", type="checkout.session.expired")
    stale["data"]["object"].update(status="expired", payment_status="unpaid")
    assert await world.stripe_webhook(world.stripe.sign(stale)) == 200
    assert await renter.inbox() == []
    await booking.refresh_from_db()
    assert booking.state == BookingState.AWAITING_ID
    assert (await Payment.get(booking=booking, purpose="rental")).status == "paid"
    assert (await Payment.get(booking=booking, purpose="deposit")).status == "held"
    assert not await OpsAlert.filter(kind="hold_expired").exists()
    assert world.stripe.posts(f"/v1/checkout/sessions/{session_id}/expire") == []


async def test_a_payment_after_the_hold_expired_is_refunded_and_ops_told(world: World) -> None:
    renter = TwilioRenter(world)
    booking, session_id = await booked_and_linked(world, renter)
    world.clock.advance(timedelta(minutes=30))
    # The renter pays in the last minute of the session; Stripe's event arrives after the hold
    # timer has already freed the slot.
    completed = world.stripe.complete(session_id)
    [expired] = await renter.inbox()
    assert f"Booking {booking.reference} was not paid in time" in expired
    await booking.refresh_from_db()
    assert booking.state == BookingState.EXPIRED
    rental = await Payment.get(booking=booking, purpose="rental")
    assert rental.status == "open", "Stripe said it was completed: not marked expired"
    assert await world.stripe_webhook(completed) == 200
    await world.run()
    await rental.refresh_from_db()
    assert rental.status == "paid"
    intent = world.stripe.sessions[session_id]["payment_intent"]
    [refund] = world.stripe.refunds.values()
    assert (refund["payment_intent"], refund["amount"]) == (intent, PRICE)
    alert = await OpsAlert.get(kind="late_payment_refunded")
    assert booking.reference in str(alert.params)
    await booking.refresh_from_db()
    assert booking.state == BookingState.EXPIRED
    holds = [i for i in world.stripe.payment_intents.values() if i["capture_method"] == "manual"]
    assert holds == [], "no deposit is held for a booking that did not happen"
    assert await world.stripe_webhook(world.stripe.delivery("charge.refunded")) == 200
    recorded = await Payment.get(booking=booking, purpose="refund")
    assert (recorded.status, recorded.amount_cents) == ("refunded", PRICE)


async def test_a_wrong_twilio_signature_is_refused_and_stores_nothing(world: World) -> None:
    form, _ = world.twilio.inbound(from_=PHONE, body="BOOK T1 tomorrow 10-14")
    forged = FakeTwilio(auth_token="0" * 32, public_url=PUBLIC_URL)
    headers = forged.signed_headers("/webhooks/twilio", form)
    response = await world.client.post("/webhooks/twilio", data=form, headers=headers)
    assert response.status == 403
    await world.run()
    assert await Message.all().count() == 0
    assert await Conversation.all().count() == 0
    assert await Renter.all().count() == 0
    assert await ProcessedWebhook.all().count() == 0
    assert world.twilio.requests == []


@pytest.mark.parametrize("channel", ["sms", "telegram"])
async def test_an_unsupported_file_as_the_id_is_asked_for_again(world: World, channel: str) -> None:
    renter: ChatRenter = TwilioRenter(world) if channel == "sms" else TelegramRenter(world)
    booking, session_id = await booked_and_linked(world, renter)
    assert await world.stripe_webhook(world.stripe.complete(session_id)) == 200
    await renter.inbox()
    if isinstance(renter, TwilioRenter):
        received, again = await renter.send_id(GIF, "image/gif")
    else:
        received, again = await renter.send_document(PDF, "application/pdf", "licence.pdf")
    assert "checking your ID" in received
    assert "Please send a clear photo (JPEG or PNG) of your ID" in again
    assert await IdentityCheck.all().count() == 0
    [thanks] = await renter.send_id()
    assert "checking your ID" in thanks
    check = await IdentityCheck.get(booking=booking)
    assert check.status == "pending" and check.document_content_type == "image/jpeg"
    assert (await Booking.get(id=booking.id)).state == BookingState.AWAITING_ID


async def test_two_renters_racing_for_one_slot_one_gets_it(world: World) -> None:
    first, second = TwilioRenter(world), TwilioRenter(world, OTHER_PHONE)
    for renter in (first, second):
        [quote] = await renter.say("BOOK T1 tomorrow 10-14")
        assert "Reply YES" in quote
    responses = await asyncio.gather(first.post("YES"), second.post("YES"))
    assert [r.status for r in responses] == [200, 200]
    answers = [await first.inbox(), await second.inbox()]
    held = await Booking.filter(state__in=SLOT_HOLDING_STATES)
    assert len(held) == 1
    winner = 0 if (await held[0].renter).phone == PHONE else 1
    holding, link = answers[winner]
    assert "holding T1" in holding and "/pay/cs_test_" in link
    [taken] = answers[1 - winner]
    assert taken.startswith("That time is taken. The nearest free times are:")
    assert re.search(r"^1\. Tue, Jun 2 ", taken, re.MULTILINE), "numbered alternatives"
    assert len(world.stripe.sessions) == 1


# -- an ID photo by upload link where MMS does not reach Keyturn ------------------------------

BERLIN_PHONE = "+4915112345678"


async def booked_and_paid_by_sms(world: World, renter: TwilioRenter) -> tuple[Booking, str]:
    """Book T1 by SMS and pay at Stripe: the booking and the message that asks for the ID."""
    await renter.say("BOOK T1 tomorrow 10-14")
    _holding, link = await renter.say("yes")
    assert await world.stripe_webhook(world.stripe.complete(checkout_session(world, link))) == 200
    [ask_id] = await renter.inbox()
    booking = await Booking.get()
    assert booking.state == BookingState.AWAITING_ID
    return booking, ask_id


def upload_path(ask_id: str) -> str:
    match = re.search(rf"{re.escape(PUBLIC_URL)}(/upload/\S+)", ask_id)
    assert match, ask_id
    return match.group(1)


def photo_form(content: bytes, content_type: str) -> Any:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("photo", content, filename="id.jpg", content_type=content_type)
    return form


async def test_an_sms_renter_on_a_german_number_uploads_the_id_through_a_link(
    world: World,
) -> None:
    renter = TwilioRenter(world, BERLIN_PHONE)
    booking, ask_id = await booked_and_paid_by_sms(world, renter)
    assert booking.reference in ask_id and "30 Minuten" in ask_id, "in German, by the number"
    path = upload_path(ask_id)

    page = await world.client.get(path)
    assert page.status == 200
    text = await page.text()
    assert '<html lang="de">' in text and 'type="file" name="photo" accept="image/*"' in text
    assert 'enctype="multipart/form-data"' in text and "<script" not in text

    sent = await world.client.post(path, data=photo_form(JPEG, "image/jpeg"))
    assert sent.status == 200
    assert "Foto ist angekommen" in await sent.text()
    check = await IdentityCheck.get(booking=booking)
    assert check.status == "pending" and check.document_content_type == "image/jpeg"
    assert check.document_encrypted is not None
    assert world.runtime.journey.sealer.open_bytes(check.document_encrypted) == JPEG
    review = await OpsAlert.get(kind="id_review")
    assert review.params == {"booking": booking.reference, "check": check.id}
    [arrived] = await renter.inbox()
    assert arrived == world.runtime.translator.text("de", "journey.id_received")

    again = await world.client.post(path, data=photo_form(JPEG, "image/jpeg"))
    assert again.status == 410 and "funktioniert nicht mehr" in await again.text()
    assert (await world.client.get(path)).status == 410
    assert await IdentityCheck.filter(booking=booking).count() == 1

    assert await approve(world, check.id)
    [confirmed] = await renter.inbox()
    assert booking.reference in confirmed
    await booking.refresh_from_db()
    assert booking.state == BookingState.CONFIRMED
    links = world.runtime.journey.upload_links
    assert links is not None
    unused = links.url_for(booking.renter_id, booking.id).removeprefix(PUBLIC_URL)
    assert (await world.client.get(unused)).status == 410, "no ID is awaited any more"


async def test_an_upload_link_refuses_a_wrong_file_a_forged_token_and_an_expired_link(
    world: World,
) -> None:
    renter = TwilioRenter(world, BERLIN_PHONE)
    booking, ask_id = await booked_and_paid_by_sms(world, renter)
    path = upload_path(ask_id)

    gif = await world.client.post(path, data=photo_form(GIF, "image/gif"))
    assert gif.status == 415 and "HEIC" in await gif.text()
    too_big = JPEG + b"\x00" * (8 * 1024 * 1024)
    large = await world.client.post(path, data=photo_form(too_big, "image/jpeg"))
    assert large.status == 415
    token = path.rsplit("/", 1)[1]
    forged = f"/upload/{token[:-6]}{'A' * 6}"
    assert (await world.client.post(forged, data=photo_form(JPEG, "image/jpeg"))).status == 410
    assert (await world.client.get("/upload/not-a-token")).status == 410

    world.clock.current += timedelta(minutes=31)
    expired = await world.client.post(path, data=photo_form(JPEG, "image/jpeg"))
    assert expired.status == 410
    assert not await IdentityCheck.filter(booking=booking).exists()
    assert not await OpsAlert.filter(kind="id_review").exists()
    assert await renter.inbox() == []

    [again] = await renter.say("und das Foto?")  # the renter writes in the chat: a fresh link
    fresh = upload_path(again)
    assert fresh != path and booking.reference in again
    assert (await world.client.post(fresh, data=photo_form(JPEG, "image/jpeg"))).status == 200
    assert await IdentityCheck.filter(booking=booking, status="pending").count() == 1
    [arrived] = await renter.inbox()
    assert arrived == world.runtime.translator.text("de", "journey.id_received")
    [reply] = await renter.say("und das Foto?")
    assert "/upload/" not in reply, "the ID is in review: no further link"


async def test_an_sms_renter_on_a_us_number_is_still_asked_for_an_mms(world: World) -> None:
    renter = TwilioRenter(world)
    booking, ask_id = await booked_and_paid_by_sms(world, renter)
    assert "photo of your ID" in ask_id and "/upload/" not in ask_id
    [thanks] = await renter.send_id()
    assert "checking your ID" in thanks
    assert await IdentityCheck.filter(booking=booking).count() == 1
