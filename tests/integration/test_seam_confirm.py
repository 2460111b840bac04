"""A Seam code is confirmed without webhooks: Keyturn looks it up until the lock has set it, and
the renter's PIN goes out as soon as it has (a webhook only makes that sooner)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime, create_app
from bot.config import Settings
from bot.keys import CLOCK
from bot.lock_routes import setup_seam_webhook
from bot.payments import StripePayments
from flows.staging import stage_outcome
from locks.seam import SeamLockProvider
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AssetLock,
    Booking,
    BookingState,
    Conversation,
    Location,
    Lock,
    Message,
    OpsAlert,
    Renter,
)
from storage.sealing import Sealer
from tests.conftest import FakeClock
from tests.e2e.sandbox_apps import say
from tests.fakes.seam import API_KEY, WEBHOOK_SECRET, FakeSeam
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY as STRIPE_KEY
from tests.fakes.stripe import WEBHOOK_SECRET as STRIPE_SECRET
from tests.fakes.stripe import FakeStripe
from tests.integration.conftest import END, START, settle
from tests.support import rental_times


@pytest.fixture
async def seam(
    database: str, clock: FakeClock
) -> AsyncIterator[tuple[FakeSeam, Runtime, str, Sealer]]:
    fake = FakeSeam(now=clock.now)
    device = fake.add_device(name="Bay 7 keypad")
    async with running(fake.app()) as base:
        key = Fernet.generate_key().decode()
        settings = Settings.from_env(
            {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": key}
        )
        provider = SeamLockProvider(API_KEY, base_url=base, timeout=5)
        runtime = build_runtime(settings, clock=clock, locks={"seam": provider})
        yield fake, runtime, device, Sealer(key)
        await provider.aclose()


@dataclass
class SeamAndStripe:
    """The Seam lock and Stripe, both faked, behind the app a renter and Stripe reach."""

    seam: FakeSeam
    stripe: FakeStripe
    runtime: Runtime
    client: TestClient[Any, Any]
    device: str


@pytest.fixture
async def seam_and_stripe(database: str, clock: FakeClock) -> AsyncIterator[SeamAndStripe]:
    seam_fake, stripe_fake = FakeSeam(now=clock.now), FakeStripe(now=clock.now)
    device = seam_fake.add_device(name="Bay 7 keypad")
    async with running(seam_fake.app()) as seam_base, running(stripe_fake.app()) as stripe_base:
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": database,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "STRIPE_API_KEY": STRIPE_KEY,
                "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
                "STRIPE_API_BASE": stripe_base,
            }
        )
        provider = SeamLockProvider(API_KEY, base_url=seam_base, timeout=5)
        payments = StripePayments(STRIPE_KEY, api_base=stripe_base, now=clock.now)
        runtime = build_runtime(
            settings, clock=clock, sandbox=True, payments=payments, locks={"seam": provider}
        )
        app = create_app(runtime, sandbox=True, workers=False)
        app.cleanup_ctx.clear()  # the test's `database` fixture holds the connection
        async with TestClient(TestServer(app)) as client:
            yield SeamAndStripe(seam_fake, stripe_fake, runtime, client, device)
        await payments.close()
        await provider.aclose()


async def confirmed_on(
    device: str, runtime: Runtime, *, channel: str = "sms", pin_lead_minutes: int | None = None
) -> Booking:
    """A booking on the Seam lock whose payment and ID are done, confirmed by the journey."""
    yard = await Location.create(
        slug="yard", name="Yard", timezone="America/New_York", pin_lead_minutes=pin_lead_minutes
    )
    asset = await Asset.create(
        code="Q7", label="Bay 7", location=yard, currency="USD", price_per_hour_cents=100
    )
    lock = await Lock.create(
        key="bay7",
        provider="seam",
        device_id=device,
        label="Bay 7",
        timezone="America/New_York",
        location=yard,
    )
    await AssetLock.create(asset=asset, lock=lock)
    renter = await Renter.create(phone="+15550100001")
    await Conversation.create(channel=channel, address=renter.phone, renter=renter)
    booking = await Booking.create(
        reference="KSEAM2",
        renter=renter,
        asset=asset,
        **await rental_times(asset.id, START, END),
        state=BookingState.AWAITING_ID,
        currency="USD",
        price_cents=100,
    )
    now = runtime.clock.now()
    async with in_transaction() as conn:
        outcome = await runtime.journey.confirm(conn, booking, now)
        await stage_outcome(conn, outcome, now)
    return booking


async def pins_told(sealer: Sealer) -> list[str]:
    return [
        sealer.open(m.body)
        for m in await Message.filter(direction="out", sealed=True).order_by("id")
    ]


async def test_a_last_minute_pin_follows_the_lock_without_webhooks(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, sealer = seam
    clock.current = START - timedelta(minutes=30)
    booking = await confirmed_on(device, runtime)
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.PROGRAMMING, "Seam says setting: not told yet"
    assert await pins_told(sealer) == []

    fake.program()  # the lock sets it; no webhook is configured
    clock.advance(timedelta(seconds=20))
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.SET
    [told] = await pins_told(sealer)
    assert sealer.open(code.pin_encrypted) in told

    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    assert len(await pins_told(sealer)) == 1, "told once"


async def test_a_code_set_by_webhook_sends_a_due_pin_at_once(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, sealer = seam
    clock.current = START - timedelta(minutes=30)
    booking = await confirmed_on(device, runtime)
    await settle(runtime)
    assert await pins_told(sealer) == []

    app = web.Application()
    app[CLOCK] = runtime.clock
    setup_seam_webhook(app, WEBHOOK_SECRET)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        [event] = fake.program()
        body, headers = fake.sign_webhook(event)
        assert (await client.post("/webhooks/seam", data=body, headers=headers)).status == 200
    finally:
        await client.close()
    await settle(runtime)  # the same instant: no waiting for the next look
    code = await AccessCode.get(booking=booking)
    [told] = await pins_told(sealer)
    assert sealer.open(code.pin_encrypted) in told


async def test_a_pin_not_yet_due_keeps_its_time_when_the_code_is_set(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, sealer = seam
    clock.current = START - timedelta(hours=5)
    booking = await confirmed_on(device, runtime)
    await settle(runtime)
    fake.program()
    clock.advance(timedelta(minutes=15))
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.SET, "looked up while the window is hours away"
    assert await pins_told(sealer) == [], "the PIN goes out at its own time"
    clock.current = START - timedelta(hours=1)
    await settle(runtime)
    assert len(await pins_told(sealer)) == 1


async def test_a_last_minute_code_has_time_to_be_set_before_ops_hear_of_it(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, sealer = seam
    clock.current = START - timedelta(minutes=30)
    booking = await confirmed_on(device, runtime)
    await settle(runtime)
    assert await OpsAlert.filter(kind="code_not_set").count() == 0, "just asked the lock"

    clock.advance(timedelta(minutes=9))
    await settle(runtime)
    assert await OpsAlert.filter(kind="code_not_set").count() == 0

    clock.advance(timedelta(minutes=1))
    await settle(runtime)
    [alert] = await OpsAlert.filter(kind="code_not_set")
    assert alert.resolved_at is None

    fake.program()
    clock.advance(timedelta(seconds=20))
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.SET
    await alert.refresh_from_db()
    assert alert.resolved_at is not None, "the code it was about is set"
    assert len(await pins_told(sealer)) == 1


async def receipts(runtime: Runtime) -> list[str]:
    """The renter's messages besides their PIN, as they read them."""
    return [m.body for m in await Message.filter(direction="out", sealed=False).order_by("id")]


async def extended_by_three_hours(world: SeamAndStripe) -> None:
    """The renter texts EXTEND 3h on the sandbox, says YES, and pays the link on Stripe, whose
    signed webhook tells Keyturn."""
    app = (world.client, world.runtime)
    [quoted] = await say(app, "EXTEND 3h")
    assert quoted.startswith("Extend until") and "$3.00" in quoted
    before = set(world.stripe.sessions)
    told = await say(app, "YES")
    assert "payment link for the extension follows" in told[0]
    assert "Pay $3.00 here" in told[1]
    [session] = set(world.stripe.sessions) - before
    paid = world.stripe.complete(session)
    response = await world.client.post("/webhooks/stripe", data=paid.body, headers=paid.headers)
    assert response.status == 200
    await settle(world.runtime)


def lock_window_end(world: SeamAndStripe) -> datetime:
    """When the code on the Seam lock stops working, as the lock holds it."""
    [code] = world.seam.access_codes.values()
    return datetime.fromisoformat(str(code["ends_at"]))


async def set_on_the_lock(
    fake: FakeSeam, device: str, runtime: Runtime, clock: FakeClock, *, channel: str = "sms"
) -> Booking:
    clock.current = START - timedelta(minutes=30)
    booking = await confirmed_on(device, runtime, channel=channel)
    await settle(runtime)
    fake.program()
    clock.advance(timedelta(seconds=20))
    await settle(runtime)
    return await Booking.get(id=booking.id)


async def test_an_extension_says_the_code_works_until_then_once_the_lock_has_it(
    seam_and_stripe: SeamAndStripe, clock: FakeClock
) -> None:
    world = seam_and_stripe
    fake, runtime = world.seam, world.runtime
    await set_on_the_lock(fake, world.device, runtime, clock, channel="sandbox")
    ends_before = lock_window_end(world)
    fake.reprogram_on_update = True
    await extended_by_three_hours(world)
    assert not [r for r in await receipts(runtime) if "works until" in r], "the lock is setting it"

    fake.program()
    clock.advance(timedelta(seconds=20))
    await settle(runtime)
    told = [r for r in await receipts(runtime) if "works until" in r]
    assert len(told) == 1 and "ends" in told[0]
    assert lock_window_end(world) == ends_before + timedelta(hours=3)


async def test_an_extension_the_lock_refuses_never_promises_the_new_end(
    seam_and_stripe: SeamAndStripe, clock: FakeClock
) -> None:
    world = seam_and_stripe
    fake, runtime = world.seam, world.runtime
    await set_on_the_lock(fake, world.device, runtime, clock, channel="sandbox")
    ends_before = lock_window_end(world)
    fake.fail_next(1, status=400, path="/access_codes/update")
    await extended_by_three_hours(world)
    clock.advance(timedelta(minutes=15))
    await settle(runtime)
    said = await receipts(runtime)
    assert not [r for r in said if "works until" in r]
    [unchanged] = [r for r in said if "has not taken the new time" in r]
    assert "team" in unchanged
    assert await OpsAlert.filter(kind="extension_not_on_lock").count() == 1
    assert lock_window_end(world) == ends_before, "the lock holds the old window"


async def test_an_extension_the_lock_never_confirms_is_told_as_such(
    seam_and_stripe: SeamAndStripe, clock: FakeClock
) -> None:
    world = seam_and_stripe
    fake, runtime = world.seam, world.runtime
    await set_on_the_lock(fake, world.device, runtime, clock, channel="sandbox")
    fake.reprogram_on_update = True
    await extended_by_three_hours(world)
    clock.advance(timedelta(minutes=10))
    await settle(runtime)
    said = await receipts(runtime)
    assert not [r for r in said if "works until" in r]
    assert len([r for r in said if "has not taken the new time" in r]) == 1
    assert await OpsAlert.filter(kind="extension_not_on_lock").count() == 1


async def test_a_pin_due_hours_before_its_window_follows_the_lock_within_seconds(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, sealer = seam
    clock.current = START - timedelta(hours=3)
    booking = await confirmed_on(device, runtime, pin_lead_minutes=120)
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.PROGRAMMING
    pin_due = booking.blocked_from - timedelta(hours=2)
    clock.current = pin_due + timedelta(minutes=1)  # the PIN is due; the lock is still setting
    await settle(runtime)
    assert await pins_told(sealer) == []

    fake.program()  # the lock sets it; no webhook is configured
    clock.advance(timedelta(seconds=20))
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.SET, "looked up at the close rate as the PIN is due"
    [told] = await pins_told(sealer)
    assert sealer.open(code.pin_encrypted) in told


async def cancelled_by_the_renter(runtime: Runtime, booking: Booking) -> None:
    """The booking is cancelled and the renter told, as a cancellation does."""
    now = runtime.clock.now()
    async with in_transaction() as conn:
        outcome = await runtime.journey.cancel_booking(
            conn, booking, actor="renter", now=now, refund=0
        )
        await runtime.journey.notifier.tell(
            conn,
            booking.renter_id,
            "journey.cancelled",
            now=now,
            kind="receipt",
            params={"reference": booking.reference, "refund": "$0.00"},
        )
        await stage_outcome(conn, outcome, now)


async def test_a_cancelled_renter_is_told_their_code_is_off_once_the_lock_confirms_it(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, _ = seam
    booking = await set_on_the_lock(fake, device, runtime, clock)
    await cancelled_by_the_renter(runtime, booking)
    await settle(runtime)
    said = await receipts(runtime)
    assert [r for r in said if "being switched off" in r]
    assert not [r for r in said if "no longer" in r], "Seam has not taken it off yet"

    fake.program()  # the lock takes it off; no webhook is configured
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.REMOVED
    [off] = [r for r in await receipts(runtime) if "no longer" in r]
    assert booking.reference in off
    clock.advance(timedelta(hours=1))
    await settle(runtime)
    assert len([r for r in await receipts(runtime) if "no longer" in r]) == 1, "told once"


async def test_a_rental_that_ends_as_planned_is_not_told_its_code_was_switched_off(
    seam: tuple[FakeSeam, Runtime, str, Sealer], clock: FakeClock
) -> None:
    fake, runtime, device, _ = seam
    booking = await set_on_the_lock(fake, device, runtime, clock)
    clock.current = booking.blocked_until
    await settle(runtime)
    fake.program()
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.REMOVED
    assert not [r for r in await receipts(runtime) if "no longer" in r]
