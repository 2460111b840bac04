"""A Keyturn app wired to the fake Bot API with an ops group, staff of every role, and an SMS
channel that records what renters receive: shared by the ops and hand-off tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.payments import StripePayments
from bot.transports.telegram_routes import SECRET_HEADER, WEBHOOK_PATH
from flows.inventory import apply_inventory, load_inventory
from flows.staging import stage_outcome
from storage import db
from storage.models import Asset, Booking, BookingState, Renter, StaffMember, StaffRole
from storage.uow import unit_of_work
from tests.conftest import TABLES, FakeClock
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY as STRIPE_KEY
from tests.fakes.telegram import TOKEN, FakeTelegram
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_NUMBER, FakeTwilio
from tests.support import RecordingChannel, inbound, rental_times

SECRET = "kt-ops_4c1d"
OPS_CHAT = -1001234567890
OWNER, SUPPORT, MANAGER, MAINTENANCE, STRANGER = (
    100000001,
    100000002,
    100000003,
    100000004,
    555000111,
)
RENTER_PHONE = "+4915112345678"
NOW = datetime(2026, 6, 3, 8, 0, tzinfo=UTC)  # 10:00 in Berlin
Json = dict[str, Any]


@dataclass
class Ops:
    client: TestClient[Any, Any]
    fake: FakeTelegram
    runtime: Runtime
    clock: FakeClock
    sms: RecordingChannel
    group: Json
    users: dict[int, Json]

    async def post(self, update: Json) -> None:
        response = await self.client.post(
            WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET}
        )
        assert response.status == 200, await response.text()

    async def command(self, user: int, text: str, *, private: bool = False) -> str:
        """A command in the ops group (or the member's private chat); returns the answer."""
        chat = None if private else self.group
        where = user if private else OPS_CHAT
        before = len(self.fake.sent(where))
        await self.post(self.fake.text_update(self.users[user], text, chat=chat))
        answers = self.fake.sent(where)[before:]
        return "\n".join(m.get("text", "") for m in answers)

    async def in_topic(self, user: int, thread: int, text: str) -> None:
        update = self.fake.text_update(self.users[user], text, chat=self.group)
        update["message"]["message_thread_id"] = thread
        update["message"]["is_topic_message"] = True
        await self.post(update)

    async def reply(self, user: int, message: Json, text: str) -> str:
        """A staff member replies to the bot's ``message`` (in its chat); returns the answer."""
        chat_id = message["chat"]["id"]
        chat = self.group if chat_id == OPS_CHAT else None
        before = len(self.fake.sent(chat_id))
        await self.post(self.fake.text_update(self.users[user], text, chat=chat, reply_to=message))
        return "\n".join(m.get("text", "") for m in self.fake.sent(chat_id)[before:])

    async def press(self, user: int, message: Json, data: str) -> str:
        """A staff member presses a button on the bot's message in the ops group."""
        before = len(self.fake.sent(OPS_CHAT))
        await self.post(self.fake._press(self.users[user], message, data))
        return "\n".join(m.get("text", "") for m in self.fake.sent(OPS_CHAT)[before:])

    async def renter_says(self, text: str, phone: str = RENTER_PHONE) -> list[str]:
        """An SMS from a renter; returns the SMS texts Keyturn sent back meanwhile."""
        before = len(self.sms.sent)
        await self.runtime.engine.handle(
            inbound(text, channel="sms", address=phone, at=self.clock.now())
        )
        await self.deliver()
        return self.sms.texts()[before:]

    async def deliver(self) -> None:
        for _ in range(3):
            await self.runtime.timers.run_due()
            await self.runtime.dispatcher.run_once()

    def ops_messages(self) -> list[Json]:
        return self.fake.sent(OPS_CHAT)


def buttons(message: Json) -> list[tuple[str, str]]:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


@asynccontextmanager
async def ops_app(
    tmp_path: Path,
    template: Path,
    *,
    forum: bool = True,
    twilio: FakeTwilio | None = None,
    postgres_url: str | None = None,
    stripe_base: str | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Ops]:
    """``twilio``: SMS goes through the real Twilio adapter to this fake (already serving)
    instead of a recording channel. ``postgres_url``: on that (migrated) database, emptied
    first, instead of a copy of the SQLite ``template``. ``stripe_base``: payments go to the
    fake Stripe serving there instead of the sandbox's."""
    url = postgres_url
    if url is None:
        path = tmp_path / "ops.sqlite3"
        shutil.copy(template, path)
        url = f"sqlite://{path}"
    clock = FakeClock(NOW)
    await db.open_database(url)
    if postgres_url is not None:
        await db.connection().execute_script(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in TABLES) + " RESTART IDENTITY CASCADE"
        )
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    await StaffMember.create(
        telegram_user_id=MANAGER, name="Mia Manager", role=StaffRole.MANAGER, location_scope=[]
    )
    await StaffMember.create(
        telegram_user_id=MAINTENANCE,
        name="Max Fixer",
        role=StaffRole.MAINTENANCE,
        location_scope=["altstadt"],
    )
    await db.close_database()
    fake = FakeTelegram()
    group = fake.group_chat(OPS_CHAT, forum=forum)
    users = {
        uid: fake.private_chat(uid, name)
        for uid, name in (
            (OWNER, "Ana"),
            (SUPPORT, "Jonas"),
            (MANAGER, "Mia"),
            (MAINTENANCE, "Max"),
            (STRANGER, "Eve"),
        )
    }
    async with running(fake.web_app()) as api_base:
        twilio_env = {}
        if twilio is not None:
            twilio_env = {
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_SMS_FROM": SMS_NUMBER,
                "TWILIO_API_BASE": twilio.base_url,
            }
        settings = Settings.from_env(
            {
                **twilio_env,
                "KEYTURN_DATABASE_URL": url,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "KEYTURN_PUBLIC_URL": "https://keyturn.example",
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "TELEGRAM_API_BASE": api_base,
                "TELEGRAM_OPS_CHAT_ID": str(OPS_CHAT),
                **(env or {}),
            }
        )
        sms = RecordingChannel("sms")
        payments = None
        if stripe_base is not None:
            payments = StripePayments(STRIPE_KEY, api_base=stripe_base, now=clock.now)
        runtime = build_runtime(
            settings,
            clock=clock,
            channels={"sms": sms} if twilio is None else None,
            payments=payments,
        )
        app = create_app(runtime, workers=False)
        async with TestClient(TestServer(app)) as client:
            yield Ops(client, fake, runtime, clock, sms, group, users)
        if payments is not None:
            await payments.close()


async def altstadt_booking(ops: Ops, state: BookingState = BookingState.CONFIRMED) -> Booking:
    """A bike booking at Altstadt (within the support member's scope), codes planned."""
    renter = await Renter.create(phone=RENTER_PHONE, name="Rita Renter", language="en")
    await ops.renter_says("hi")  # the renter's conversation
    asset = await Asset.get(code="B1")
    start = NOW + timedelta(hours=2)
    booking = await Booking.create(
        reference="KBIKE01",
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, start, start + timedelta(hours=4)),
        state=state,
        currency="EUR",
        price_cents=3200,
        deposit_cents=0,
    )
    if state == BookingState.CONFIRMED:
        async with in_transaction() as conn:
            outcome = await ops.runtime.access.plan_booking_codes(conn, booking)
            await stage_outcome(conn, outcome, ops.clock.now())
        await ops.deliver()
    return booking


async def a_regular_with_twelve_rentals(ops: Ops) -> list[str]:
    """Rita has rented the bike twelve times; the references, newest first."""
    first = await altstadt_booking(ops)
    bike = await Asset.get(code="B1")
    made = []
    for n in range(11):
        at = first.start_at - timedelta(days=n + 1)
        booking = await Booking.create(
            reference=f"KOLD{n:02d}",
            renter_id=first.renter_id,
            asset=bike,
            **await rental_times(bike.id, at, at + timedelta(hours=2)),
            state=BookingState.COMPLETED,
            currency="EUR",
            price_cents=500,
        )
        made.append(booking.reference)
    return [first.reference, *made]
