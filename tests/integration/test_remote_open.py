"""OPEN by SMS and WhatsApp at the same moment: at most three remote opens an hour between them,
counted where two turns cannot race, and every other OPEN is told the limit.

The renter writes through signed Twilio webhooks; the locks are the simulated ones, which keep
every remote unlock they were asked for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.keys import CLOCK, ENGINE
from bot.transports.twilio import TwilioAccount, twilio_channels
from bot.transports.twilio_routes import setup_twilio
from flows.access import locks_for_booking
from flows.inventory import apply_inventory, load_inventory
from locks import LockCapability
from locks.port import capabilities_from_json
from storage.models import Booking, EffectState, OpsAlert, OutboxEffect, SimulatedUnlock
from storage.uow import unit_of_work
from tests.conftest import FakeClock, asyncpg_url
from tests.fakes.twilio import ACCOUNT_SID, AUTH_TOKEN, SMS_NUMBER, WHATSAPP_NUMBER, FakeTwilio
from tests.integration.conftest import START, confirmed_booking, settle

PUBLIC_URL = "https://keyturn.example.com"
PHONE = "+15550100001"  # the renter of the confirmed booking
OPENING = "Asking"
OPENED = "is open now"
TOO_OFTEN = "opened remotely several times this hour"


@dataclass
class Phone:
    client: TestClient[Any, Any]
    fake: FakeTwilio
    runtime: Runtime

    async def say(self, sender: str, text: str) -> None:
        form, headers = self.fake.inbound(from_=sender, body=text)
        response = await self.client.post("/webhooks/twilio", data=form, headers=headers)
        assert response.status == 200, await response.text()

    async def replies(self) -> list[str]:
        """Send what the turns queued; the texts that reached the renter on either channel."""
        while await self.runtime.dispatcher.run_once():
            pass
        return [m.body or "" for m in self.fake.sent if m.to in (PHONE, f"whatsapp:{PHONE}")]

    async def answers(self) -> list[str]:
        """The replies to the renter's messages, without the "open now" that follows each
        confirmed unlock."""
        return [text for text in await self.replies() if OPENED not in text]

    async def opened(self) -> int:
        return len([text for text in await self.replies() if OPENED in text])


@pytest.fixture
async def phone(database: str, clock: FakeClock) -> AsyncIterator[Phone]:
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": database,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_PUBLIC_URL": PUBLIC_URL,
        }
    )
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    fake = FakeTwilio(public_url=PUBLIC_URL, now=clock.now)
    async with fake.serving():
        account = TwilioAccount(
            ACCOUNT_SID, AUTH_TOKEN, public_url=PUBLIC_URL, api_base=fake.base_url, timeout=5
        )
        await account.start()
        try:
            channels = twilio_channels(
                account, clock=clock, sms_from=SMS_NUMBER, whatsapp_from=WHATSAPP_NUMBER
            )
            runtime = build_runtime(settings, clock=clock, channels=channels)
            app = web.Application()
            app[ENGINE] = runtime.engine
            app[CLOCK] = clock
            setup_twilio(app, auth_token=AUTH_TOKEN, public_url=PUBLIC_URL)
            async with TestClient(TestServer(app)) as client:
                yield Phone(client, fake, runtime)
        finally:
            await account.close()


async def unlocks() -> int:
    return await SimulatedUnlock.filter(source="remote", accepted=True).count()


@asynccontextmanager
async def commits_overlapping(database: str) -> AsyncIterator[None]:
    """Turns started in the block reach their commits at the same moment, as turns of two
    workers overlap: on PostgreSQL the audit trail takes no rows until two of them wait (on
    that table, or on a row another one holds). SQLite runs one transaction at a time."""
    if not database.startswith("postgres"):
        yield
        return
    holder = await asyncpg.connect(asyncpg_url(database))
    try:
        held = holder.transaction()
        await held.start()
        await holder.execute("LOCK TABLE audit_event IN SHARE MODE")  # reads go on
        yield
        for _ in range(200):
            # Activity is read once per transaction unless its snapshot is cleared.
            await holder.execute("SELECT pg_stat_clear_snapshot()")
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the two turns never reached their commits together")
        await held.rollback()
    finally:
        await holder.close()


async def test_open_by_sms_and_whatsapp_at_once_opens_at_most_three_times_an_hour(
    phone: Phone, clock: FakeClock, database: str
) -> None:
    booking = await confirmed_booking(phone.runtime)
    locks = len(await _remote_locks(booking))
    clock.current = START + timedelta(minutes=5)
    await phone.say(PHONE, "OPEN")
    await phone.say(f"whatsapp:{PHONE}", "OPEN")
    assert await unlocks() == 0, "opened once the turns are stored, through the outbox"
    first = await phone.answers()
    assert [OPENING in text for text in first] == [True, True], first
    assert await unlocks() == 2 * locks
    assert await phone.opened() == 2 * locks, "told once each lock confirmed"

    async with commits_overlapping(database):
        both = asyncio.gather(phone.say(PHONE, "OPEN"), phone.say(f"whatsapp:{PHONE}", "OPEN"))
    await both
    racing = (await phone.answers())[2:]
    assert sorted(OPENING in text for text in racing) == [False, True], racing
    assert any(TOO_OFTEN in text for text in racing), racing
    assert await unlocks() == 3 * locks, "three opens in the hour, on either channel"

    clock.advance(timedelta(minutes=30))  # still inside the hour: refused on both channels
    await asyncio.gather(phone.say(PHONE, "OPEN"), phone.say(f"whatsapp:{PHONE}", "OPEN"))
    later = (await phone.answers())[4:]
    assert len(later) == 2 and all(TOO_OFTEN in text for text in later), later
    assert await unlocks() == 3 * locks

    clock.advance(timedelta(minutes=31))  # the first opens are more than an hour ago
    await phone.say(f"whatsapp:{PHONE}", "OPEN")
    [again] = (await phone.answers())[6:]
    assert OPENING in again
    assert await unlocks() == 4 * locks
    assert await phone.opened() == 4 * locks


async def _remote_locks(booking: Booking) -> list[str]:
    return [
        lock.key
        for lock in await locks_for_booking(booking)
        if LockCapability.REMOTE_UNLOCK in capabilities_from_json(lock.capabilities, lock.provider)
    ]


async def test_three_opens_and_codes_in_a_row_are_answered_not_handed_to_a_person(
    phone: Phone, clock: FakeClock
) -> None:
    """A renter who opens three times, or asks for the code three times, got what they asked
    for each time: the bot did not fail to help, so no person is called in."""
    booking = await confirmed_booking(phone.runtime)
    locks = len(await _remote_locks(booking))
    clock.current = START + timedelta(minutes=5)
    await settle(phone.runtime)  # the codes are on the locks
    sent_before = len(await phone.answers())  # and the PIN was sent
    for _ in range(3):
        await phone.say(PHONE, "OPEN")
    opened = (await phone.answers())[sent_before:]
    assert len(opened) == 3 and all(OPENING in text for text in opened), opened
    assert await unlocks() == 3 * locks

    for _ in range(3):
        await phone.say(PHONE, "CODE")
    codes = (await phone.answers())[sent_before + 3 :]
    assert len(codes) == 3 and all("door codes" in text for text in codes), codes
    assert not any("A person from our team" in text for text in opened + codes)


async def test_two_opens_of_one_booking_finishing_together_fold_into_one_alert(
    phone: Phone, clock: FakeClock, database: str
) -> None:
    """Both opens raise the booking's "opened remotely" alert in the transactions that mark them
    done, at the same moment: the second folds into the first instead of failing, so neither
    open is attempted again (which would unlock the door a second time)."""
    booking = await confirmed_booking(phone.runtime)
    locks = len(await _remote_locks(booking))
    clock.current = START + timedelta(minutes=5)
    await phone.say(PHONE, "OPEN")
    await phone.say(f"whatsapp:{PHONE}", "OPEN")

    async with commits_overlapping(database):
        running = asyncio.ensure_future(phone.runtime.dispatcher.run_once())
    await running
    assert await unlocks() == 2 * locks
    assert await phone.opened() == 2 * locks, "each confirmed unlock told once"

    [alert] = await OpsAlert.filter(kind="remote_open", resolved_at__isnull=True)
    assert alert.group_key == f"remote-open:{booking.reference}"
    assert alert.occurrences == 2 * locks
    opens = await OutboxEffect.filter(kind="lock.open")
    assert [(e.state, e.attempts) for e in opens] == [(EffectState.DONE, 1)] * (2 * locks)
    clock.advance(timedelta(minutes=5))
    await settle(phone.runtime)
    assert await unlocks() == 2 * locks, "nothing opened again"


async def test_an_open_asked_before_the_booking_was_cancelled_does_not_open(
    phone: Phone, clock: FakeClock
) -> None:
    """OPEN, then CANCEL (and YES) before the opens were carried out: the door stays shut, and
    the renter hears that the lock was not opened because the booking is no longer active."""
    booking = await confirmed_booking(phone.runtime)
    locks = await _remote_locks(booking)
    clock.current = START + timedelta(minutes=5)
    await settle(phone.runtime)
    told_before = len(await phone.replies())
    await phone.say(PHONE, "OPEN")
    await phone.say(PHONE, "CANCEL")
    await phone.say(PHONE, "YES")
    answers = (await phone.replies())[told_before:]
    assert (await Booking.get(id=booking.id)).state == "cancelled", answers
    assert await unlocks() == 0, "nothing opened for a cancelled booking"
    assert not any(OPENED in text for text in answers), answers
    dropped = [text for text in answers if "was not opened" in text]
    assert len(dropped) == len(locks) and all("no longer active" in t for t in dropped), answers
    assert await OpsAlert.filter(kind="remote_open").count() == 0
