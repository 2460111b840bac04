"""A booking's code on a Seam lock, end to end: programmed through the SDK against the fake,
confirmed by a signed webhook, revoked, and an outage told to ops once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime
from bot.config import Settings
from bot.keys import CLOCK
from bot.lock_routes import setup_seam_webhook
from flows.staging import stage_outcome
from locks import LockCapability
from locks.port import DEFAULT_CAPABILITIES, capabilities_to_json
from locks.seam import SeamLockProvider
from locks.simulated import SimulatedLockProvider
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AssetLock,
    Booking,
    BookingState,
    Location,
    Lock,
    OpsAlert,
    Renter,
)
from storage.sealing import Sealer
from tests.conftest import FakeClock
from tests.fakes.seam import API_KEY, WEBHOOK_SECRET, FakeSeam
from tests.fakes.server import running
from tests.integration.conftest import END, START, settle


@pytest.fixture
async def seam(database: str, clock: FakeClock) -> AsyncIterator[tuple[FakeSeam, Runtime, str]]:
    fake = FakeSeam(now=clock.now)
    device = fake.add_device(name="Bay 7 keypad")
    async with running(fake.app()) as base:
        key = Fernet.generate_key().decode()
        settings = Settings.from_env(
            {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": key}
        )
        provider = SeamLockProvider(API_KEY, base_url=base, timeout=5)
        simulated = SimulatedLockProvider(Sealer(key), clock.now)
        runtime = build_runtime(
            settings, clock=clock, locks={"seam": provider, "simulated": simulated}
        )
        yield fake, runtime, device
        await provider.aclose()


async def booking_on(device: str, runtime: Runtime) -> Booking:
    yard = await Location.create(slug="yard", name="Yard", timezone="America/New_York")
    asset = await Asset.create(code="Q7", label="Bay 7", location=yard, currency="USD")
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
    booking = await Booking.create(
        reference="KSEAM1",
        renter=renter,
        asset=asset,
        start_at=START,
        end_at=END,
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=100,
    )
    async with in_transaction() as conn:
        outcome = await runtime.access.plan_booking_codes(conn, booking)
        await stage_outcome(conn, outcome, runtime.clock.now())
    return booking


async def webhook_client(runtime: Runtime) -> TestClient:  # type: ignore[type-arg]
    app = web.Application()
    app[CLOCK] = runtime.clock
    setup_seam_webhook(app, WEBHOOK_SECRET)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_code_set_by_webhook_and_revoked_on_cancel(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    booking = await booking_on(device, runtime)
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.PROGRAMMING, "Seam accepted it; the lock has not yet"
    [access_code] = fake.access_codes.values()
    assert access_code["starts_at"].startswith("2026-06-03T13:45")
    client = await webhook_client(runtime)
    try:
        [event] = fake.program()
        body, headers = fake.sign_webhook(event)
        assert (await client.post("/webhooks/seam", data=body, headers=headers)).status == 200
        again = await client.post("/webhooks/seam", data=body, headers=headers)
        assert again.status == 200
        await code.refresh_from_db()
        assert code.state == AccessCodeState.SET
        tampered = body.replace(b"set_on_device", b"removed_from_device")
        assert (await client.post("/webhooks/seam", data=tampered, headers=headers)).status == 403
        unsigned = await client.post("/webhooks/seam", data=body)
        assert unsigned.status == 403
        await code.refresh_from_db()
        assert code.state == AccessCodeState.SET

        async with in_transaction() as conn:
            outcome = await runtime.access.revoke(conn, [code], actor="renter", reason="cancelled")
            await stage_outcome(conn, outcome, clock.now())
        await settle(runtime)
        [removed] = fake.program()
        body, headers = fake.sign_webhook(removed)
        await client.post("/webhooks/seam", data=body, headers=headers)
        await code.refresh_from_db()
        assert code.state == AccessCodeState.REMOVED
        assert fake.access_codes == {}

        for _ in range(3):
            body, headers = fake.sign_webhook(fake.set_online(device, False))
            await client.post("/webhooks/seam", data=body, headers=headers)
        [alert] = await OpsAlert.filter(kind="lock_offline")
        assert alert.occurrences == 3 and alert.resolved_at is None
        body, headers = fake.sign_webhook(fake.set_online(device, True))
        await client.post("/webhooks/seam", data=body, headers=headers)
        await alert.refresh_from_db()
        assert alert.resolved_at is not None
    finally:
        await client.close()


async def test_seam_down_is_retried_until_the_code_is_set(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    booking = await booking_on(device, runtime)
    fake.fail_next(3, status=503)
    for _ in range(4):
        await settle(runtime)
        clock.advance(timedelta(minutes=1))
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.PROGRAMMING
    assert len(fake.access_codes) == 1, "created once despite the retries"


async def test_a_lock_unreachable_at_the_deadline_gets_an_offline_backup_code(
    database: str, clock: FakeClock
) -> None:
    fake = FakeSeam(now=clock.now)
    device = fake.add_device(name="Bay 7 keypad", can_program_offline_access_codes=True)
    async with running(fake.app()) as base:
        key = Fernet.generate_key().decode()
        settings = Settings.from_env(
            {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": key}
        )
        provider = SeamLockProvider(API_KEY, base_url=base, timeout=5)
        runtime = build_runtime(settings, clock=clock, locks={"seam": provider})
        try:
            clock.current = START - timedelta(hours=2)
            booking = await booking_on(device, runtime)
            await Lock.filter(key="bay7").update(
                capabilities=capabilities_to_json(
                    DEFAULT_CAPABILITIES["seam"] | LockCapability.OFFLINE_CODES
                )
            )
            fake.set_online(device, False)  # its bridge is down: Seam holds the code "setting"
            await settle(runtime)
            [first] = await AccessCode.filter(booking=booking)
            assert first.state == AccessCodeState.PROGRAMMING

            clock.current = START - timedelta(hours=1)  # the deadline
            await settle(runtime)
            first = await AccessCode.get(id=first.id)
            assert first.state == AccessCodeState.REMOVED, "the code waiting for the lock is gone"
            [backup] = await AccessCode.filter(booking=booking, state=AccessCodeState.SET)
            assert backup.offline and backup.id != first.id
            [offline] = [c for c in fake.access_codes.values() if c["is_offline_access_code"]]
            assert runtime.access.sealer.open(backup.pin_encrypted) == offline["code"]
            assert offline["starts_at"] <= "2026-06-03T13:45:00" < offline["ends_at"]
            alert = await OpsAlert.get(kind="code_not_set")
            assert alert.message_key == "ops.offline_backup_issued"
            with_lock = await AccessCode.get(id=backup.id).prefetch_related("lock")
            pin_text = await runtime.journey._pin_text(booking, [with_lock], "en")
            assert offline["code"] in pin_text and "within 24 hours" in pin_text

            # Cancelled mid-rental: the offline code cannot be taken off; ops hear until when.
            clock.current = START + timedelta(hours=1)
            async with in_transaction() as conn:
                outcome = await runtime.access.revoke(
                    conn, [backup], actor="ops", reason="cancelled"
                )
                await stage_outcome(conn, outcome, clock.now())
            await settle(runtime)
            backup = await AccessCode.get(id=backup.id)
            assert backup.state == AccessCodeState.REMOVED
            assert "lapses" in backup.last_error
            assert offline["access_code_id"] in fake.access_codes, "never asked to delete it"
            lapse = await OpsAlert.get(kind="code_cannot_be_revoked")
            assert "Bay 7" in str(lapse.params)
        finally:
            await provider.aclose()
