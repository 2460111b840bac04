"""A booking's code on a Seam lock, end to end: programmed through the SDK against the fake,
confirmed by a signed webhook, revoked, and an outage told to ops once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime
from bot.config import Settings
from bot.keys import CLOCK
from bot.lock_routes import setup_seam_webhook
from flows.access import LIVE_STATES, programming
from flows.bookings import is_free
from flows.effects import FollowUp
from flows.lock_check import check_lock
from flows.staging import run_unit, stage_outcome
from locks import CodeRequest, LockCapability, ProgrammedCode
from locks.port import DEFAULT_CAPABILITIES, capabilities_to_json, constraints_to_json
from locks.seam import SeamLockProvider
from locks.simulated import SimulatedLockProvider
from locks.windows import AccessWindow
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
    OutboxEffect,
    StaffMember,
    StaffRole,
)
from storage.sealing import Sealer
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.seam import API_KEY, WEBHOOK_SECRET, FakeSeam, Json
from tests.fakes.server import running
from tests.integration.conftest import END, START, booked, reconciled, settle


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
    return await booked(runtime, asset.id, START, END, reference="KSEAM1", phone="+15550100001")


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


async def test_a_removal_is_removing_until_seam_confirms_it_even_without_a_webhook(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    booking = await booking_on(device, runtime)
    await settle(runtime)
    fake.program()
    clock.current = END + timedelta(minutes=15)  # the window ends
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.provider_ref is not None
    assert fake.access_codes[code.provider_ref]["status"] == "removing", "Seam was asked"
    assert code.state == AccessCodeState.REMOVING, "not off the lock until Seam says so"
    report = await reconciled(runtime, await Lock.get(key="bay7"))
    assert report.clean, "a removal waiting for Seam is not queued again"
    assert await OutboxEffect.filter(kind="access.remove").count() == 1

    clock.advance(timedelta(minutes=5))  # Seam has not taken it off yet: asked again later
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.REMOVING
    fake.program()  # the lock takes it off; the webhook is lost
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.REMOVING, "asked less often while it waits"
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.REMOVED and fake.access_codes == {}
    assert await OutboxEffect.filter(kind="access.remove").count() == 1


@pytest.fixture
async def offline_capable(
    database: str, clock: FakeClock
) -> AsyncIterator[tuple[FakeSeam, Runtime, str]]:
    """A Seam lock that also takes offline codes (igloohome, dormakaba through Seam)."""
    fake = FakeSeam(now=clock.now)
    device = fake.add_device(name="Bay 7 keypad", can_program_offline_access_codes=True)
    async with running(fake.app()) as base:
        key = Fernet.generate_key().decode()
        settings = Settings.from_env(
            {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": key}
        )
        provider = SeamLockProvider(API_KEY, base_url=base, timeout=5)
        runtime = build_runtime(settings, clock=clock, locks={"seam": provider})
        yield fake, runtime, device
        await provider.aclose()


async def offline_capable_booking(runtime: Runtime, device: str) -> Booking:
    booking = await booking_on(device, runtime)
    await Lock.filter(key="bay7").update(
        capabilities=capabilities_to_json(
            DEFAULT_CAPABILITIES["seam"] | LockCapability.OFFLINE_CODES
        )
    )
    return booking


async def backup_at_the_deadline(
    fake: FakeSeam, runtime: Runtime, device: str, clock: FakeClock
) -> tuple[Booking, AccessCode, Json]:
    """A booking whose lock went offline before its code was set, at the deadline."""
    clock.current = START - timedelta(hours=2)
    booking = await offline_capable_booking(runtime, device)
    fake.set_online(device, False)  # its bridge is down: Seam holds the code "setting"
    await settle(runtime)
    clock.current = START - timedelta(hours=1)  # the deadline
    await settle(runtime)
    [backup] = await AccessCode.filter(booking=booking, state=AccessCodeState.SET)
    [offline] = [c for c in fake.access_codes.values() if c["is_offline_access_code"]]
    return booking, backup, offline


async def test_a_lock_offline_at_the_deadline_gets_an_offline_backup_code(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    booking, backup, offline = await backup_at_the_deadline(fake, runtime, device, clock)
    [first] = await AccessCode.filter(booking=booking).exclude(id=backup.id)
    # Seam has the code waiting for the lock deleted as soon as the lock is back; until Seam
    # confirms it is off the lock, it is removing.
    assert first.state == AccessCodeState.REMOVING
    assert fake.access_codes[str(first.provider_ref)]["status"] == "removing"
    assert backup.offline
    assert runtime.access.sealer.open(backup.pin_encrypted) == offline["code"]
    # Whole hours of the lock's day around the window (09:45–14:15 in New York).
    assert (backup.starts_at, backup.ends_at) == (
        START - timedelta(hours=1),
        END + timedelta(hours=1),
    )
    assert offline["starts_at"].startswith("2026-06-03T13:00:00")
    alert = await OpsAlert.get(kind="code_not_set")
    assert alert.message_key == "ops.offline_backup_issued"
    with_lock = await AccessCode.get(id=backup.id).prefetch_related("lock")
    pin_text = await runtime.journey.pin_text(booking, [with_lock], "en")
    assert offline["code"] in pin_text and "within 24 hours" in pin_text

    # The lock is back: the check leaves the offline code as it is (it cannot be removed), and
    # the code that waited for the lock comes off it.
    fake.set_online(device, True)
    fake.program()
    report = await reconciled(runtime, await Lock.get(key="bay7"))
    assert report.removals_confirmed == [first.id], "off the lock's list: removed"
    assert offline["access_code_id"] in fake.access_codes
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    await first.refresh_from_db()
    assert first.state == AccessCodeState.REMOVED
    assert str(first.provider_ref) not in fake.access_codes

    # Cancelled mid-rental: the offline code cannot be taken off; ops hear until when.
    clock.current = START + timedelta(hours=1)
    async with in_transaction() as conn:
        outcome = await runtime.access.revoke(conn, [backup], actor="ops", reason="cancelled")
        await stage_outcome(conn, outcome, clock.now())
    await settle(runtime)
    backup = await AccessCode.get(id=backup.id)
    assert backup.state == AccessCodeState.REMOVED and "lapses" in backup.last_error
    assert offline["access_code_id"] in fake.access_codes, "never asked to delete it"
    lapse = await OpsAlert.get(kind="code_cannot_be_revoked")
    assert "Bay 7" in str(lapse.params)
    staff = await StaffMember.create(telegram_user_id=42, name="Ana", role=StaffRole.OWNER)
    assert runtime.ops is not None
    async with unit_of_work() as conn:  # as the ops bot runs a command
        answer = await runtime.ops.run(conn, staff.telegram_user_id, "booking", [booking.reference])
    assert "Bay 7 removed (offline: works until Wed, Jun 3 3:00" in "\n".join(answer.lines)
    # Its time is not sold again while that PIN works; a booking without one frees its time.
    await Booking.filter(id=booking.id).update(state=BookingState.CANCELLED)
    later = AccessWindow(START + timedelta(hours=2), END)
    assert not await is_free(booking.asset_id, later)
    # Nor the whole hour the code was widened to, past the booking's own range.
    widened = AccessWindow(END + timedelta(minutes=30), END + timedelta(hours=2))
    assert booking.blocked_until < widened.starts_at < backup.ends_at
    assert not await is_free(booking.asset_id, widened)
    await AccessCode.filter(booking=booking).update(offline=False)
    assert await is_free(booking.asset_id, later)
    assert await is_free(booking.asset_id, widened)


async def test_an_extension_replaces_an_offline_backup_rather_than_moving_it(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    booking, backup, offline = await backup_at_the_deadline(fake, runtime, device, clock)
    fake.set_online(device, True)
    window = AccessWindow(backup.starts_at, END + timedelta(hours=3))
    async with in_transaction() as conn:
        outcome, replaced = await runtime.access.move_window(conn, booking, window)
        await stage_outcome(conn, outcome, clock.now())
    assert replaced == ["Bay 7"], "the renter is told their code changes"
    await settle(runtime)
    assert offline["ends_at"].startswith("2026-06-03T19:00:00"), "the offline code is as it was"
    [new] = await AccessCode.filter(booking=booking, state__in=LIVE_STATES)
    assert not new.offline and new.ends_at == window.ends_at


async def test_a_booking_made_within_the_hour_on_an_online_lock_gets_its_normal_code(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    clock.current = START - timedelta(minutes=30)  # the deadline has passed already
    booking = await offline_capable_booking(runtime, device)
    await settle(runtime)
    [code] = await AccessCode.filter(booking=booking)
    assert code.state == AccessCodeState.PROGRAMMING and not code.offline
    assert not any(c["is_offline_access_code"] for c in fake.access_codes.values())
    assert not await OpsAlert.filter(message_key="ops.offline_backup_issued").exists()


async def test_an_offline_backup_stops_short_of_the_next_renters_time(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    clock.current = START - timedelta(hours=2)
    booking = await offline_capable_booking(runtime, device)
    await booked(
        runtime,
        booking.asset_id,
        END + timedelta(minutes=30),
        END + timedelta(hours=3),
        reference="KSEAM2",
        phone="+15550100002",
    )
    fake.set_online(device, False)
    await settle(runtime)
    clock.current = START - timedelta(hours=1)
    await settle(runtime)
    [backup] = await AccessCode.filter(booking=booking, offline=True)
    assert backup.starts_at == START - timedelta(hours=1), "widened where nobody else is"
    assert backup.ends_at == END, "narrowed: the next renter's code starts at 14:15"


async def test_an_offline_backup_made_by_a_worker_that_died_is_found_not_made_twice(
    offline_capable: tuple[FakeSeam, Runtime, str],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, runtime, device = offline_capable
    store = programming.store_programmed
    died: list[str] = []

    async def dies_after_the_first_offline_code(
        ctx: Any, attempt: Any, programmed: Any
    ) -> FollowUp:
        if programmed.offline and not died:
            died.append(programmed.provider_ref)
            raise ConnectionError("the worker died before recording the code")
        return await store(ctx, attempt, programmed)

    monkeypatch.setattr(programming, "store_programmed", dies_after_the_first_offline_code)
    clock.current = START - timedelta(hours=2)
    booking = await offline_capable_booking(runtime, device)
    fake.set_online(device, False)
    await settle(runtime)
    clock.current = START - timedelta(hours=1)
    await settle(runtime)
    assert died, "the offline code was made and not recorded"
    clock.advance(timedelta(minutes=10))  # the effect's retry
    await settle(runtime)
    offline = [c for c in fake.access_codes.values() if c["is_offline_access_code"]]
    assert [c["access_code_id"] for c in offline] == died, "found again, not made twice"
    [backup] = await AccessCode.filter(booking=booking, state=AccessCodeState.SET)
    assert backup.provider_ref == died[0]
    assert runtime.access.sealer.open(backup.pin_encrypted) == offline[0]["code"]


async def test_an_offline_pin_computed_later_is_sent_once_known(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    fake.offline_pins_later = True
    clock.current = START - timedelta(hours=2)
    booking = await offline_capable_booking(runtime, device)
    fake.set_online(device, False)
    await settle(runtime)
    clock.current = START - timedelta(hours=1)
    await settle(runtime)
    [backup] = await AccessCode.filter(booking=booking, offline=True)
    assert backup.state == AccessCodeState.PROGRAMMING and not backup.pin_encrypted
    assert await runtime.journey.set_codes(booking, clock.now()) is None, "no PIN to send yet"
    fake.compute_offline()
    ready = await runtime.journey.set_codes(booking, clock.now())
    assert ready is not None and [c.id for c in ready.codes] == [backup.id]
    [offline] = [c for c in fake.access_codes.values() if c["is_offline_access_code"]]
    assert runtime.access.sealer.open(ready.codes[0].pin_encrypted) == offline["code"]
    await backup.refresh_from_db()
    assert backup.state == AccessCodeState.PROGRAMMING, "recorded with the caller's commit"
    for write in ready.writes:
        await run_unit(write, clock.now())
    await backup.refresh_from_db()
    assert backup.state == AccessCodeState.SET
    assert runtime.access.sealer.open(backup.pin_encrypted) == offline["code"]


async def test_a_retried_offline_backup_keeps_the_vendors_pin(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    _, backup, offline = await backup_at_the_deadline(fake, runtime, device, clock)
    # As if the vendor had refused it and ops pressed Retry: a fresh attempt, asked as it is.
    del fake.access_codes[offline["access_code_id"]]
    await AccessCode.filter(id=backup.id).update(
        state=AccessCodeState.FAILED, provider_ref=None, pin_encrypted=""
    )
    effect = OutboxEffect(payload={"code": backup.id, "fresh": True}, idempotency_key="retry")
    follow_up = await runtime.access.execute_set(effect)
    assert follow_up is not None
    await run_unit(follow_up, clock.now())
    await settle(runtime)  # the fresh attempt is programmed
    backup = await AccessCode.get(id=backup.id)
    [again] = [c for c in fake.access_codes.values() if c["is_offline_access_code"]]
    assert backup.state == AccessCodeState.SET
    assert runtime.access.sealer.open(backup.pin_encrypted) == again["code"], "the vendor's PIN"


async def test_a_refused_offline_backup_gives_way_to_an_ordinary_code_again(
    offline_capable: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = offline_capable
    clock.current = START - timedelta(hours=2)
    booking = await offline_capable_booking(runtime, device)
    fake.set_online(device, False)
    await settle(runtime)
    fake.fail_next(1, status=400, path="/access_codes/create")  # the vendor refuses the backup
    clock.current = START - timedelta(hours=1)
    await settle(runtime)
    assert not any(c["is_offline_access_code"] for c in fake.access_codes.values())
    [backup] = await AccessCode.filter(booking=booking, offline=True)
    assert backup.state == AccessCodeState.REMOVED
    [again] = await AccessCode.filter(booking=booking, state__in=LIVE_STATES)
    assert not again.offline and again.state == AccessCodeState.PROGRAMMING
    assert await OpsAlert.filter(kind="code_rejected").exists()
    clock.advance(timedelta(minutes=30))
    await settle(runtime)
    assert await AccessCode.filter(booking=booking, offline=True).count() == 1, "no second try"


async def test_an_offline_backup_cancelled_while_being_made_is_reported_as_lapsing(
    offline_capable: tuple[FakeSeam, Runtime, str],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, runtime, device = offline_capable
    provider = runtime.locks["seam"]
    create = provider.create_code
    clock.current = START - timedelta(hours=2)
    booking = await offline_capable_booking(runtime, device)

    async def cancelled_meanwhile(request: CodeRequest) -> ProgrammedCode:
        made = await create(request)
        if made.offline:  # the renter cancels while the vendor computes the code
            await AccessCode.filter(booking=booking).update(state=AccessCodeState.REMOVING)
        return made

    monkeypatch.setattr(provider, "create_code", cancelled_meanwhile)
    fake.set_online(device, False)
    await settle(runtime)
    clock.current = START - timedelta(hours=1)
    await settle(runtime)
    [offline] = [c for c in fake.access_codes.values() if c["is_offline_access_code"]]
    [backup] = await AccessCode.filter(booking=booking, offline=True)
    assert (
        backup.state == AccessCodeState.REMOVED and backup.provider_ref == offline["access_code_id"]
    ), "its reference is kept: the code exists and cannot be removed"
    alert = await OpsAlert.get(kind="code_cannot_be_revoked")
    assert "Bay 7" in str(alert.params)


async def test_a_test_code_the_lock_keeps_after_a_404_is_not_called_removed(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    await booking_on(device, runtime)
    lock = await Lock.get(key="bay7")
    provider = runtime.access.providers["seam"]
    fake.program_immediately = True
    fake.keep_after_delete(device, answer=404)

    result = await check_lock(lock, provider, clock)

    assert not result.ok
    assert "set and removed a test code" not in result.lines
    assert any("still holds it" in line for line in result.lines)
    assert [c["status"] for c in fake.access_codes.values()] == ["set"]


async def test_a_test_code_seam_is_removing_is_not_yet_called_removed(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    await booking_on(device, runtime)
    lock = await Lock.get(key="bay7")
    fake.program_immediately = True

    result = await check_lock(lock, runtime.access.providers["seam"], clock)

    assert result.ok
    assert "set and removed a test code" not in result.lines
    assert any("not yet confirmed its removal" in line for line in result.lines)


async def test_a_stray_the_lock_keeps_after_its_deletion_is_never_counted_removed(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    await booking_on(device, runtime)
    await settle(runtime)
    fake.program()
    provider = runtime.access.providers["seam"]
    stray = await provider.create_code(
        CodeRequest(device, "473958", START, END, "someone else's", "America/New_York")
    )
    fake.program()
    fake.keep_after_delete(device, answer=404)
    lock = await Lock.get(key="bay7")

    for _ in range(2):
        report = await reconciled(runtime, lock)
        assert report.strays_removed == []
        assert report.strays_stuck == [stray.provider_ref]
    assert fake.access_codes[stray.provider_ref]["status"] == "set"
    [alert] = await OpsAlert.filter(kind="lock_drift")
    assert alert.resolved_at is None


async def test_a_renter_code_the_lock_keeps_after_a_404_stays_removing(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    booking = await booking_on(device, runtime)
    await settle(runtime)
    fake.program()
    fake.keep_after_delete(device, answer=404)
    clock.current = END + timedelta(minutes=15)
    for _ in range(4):
        await settle(runtime)
        clock.advance(timedelta(minutes=10))
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.REMOVING
    assert fake.access_codes[code.provider_ref or ""]["status"] == "set"


async def test_reconcile_reprograms_a_code_still_being_set_that_the_lock_lost(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    booking = await booking_on(device, runtime)
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.PROGRAMMING and code.provider_ref
    del fake.access_codes[code.provider_ref]  # gone from the lock before it was ever set

    report = await reconciled(runtime, await Lock.get(key="bay7"))
    await settle(runtime)

    assert report.reprogrammed == [code.id]
    [again] = fake.access_codes.values()
    await code.refresh_from_db()
    assert code.provider_ref == again["access_code_id"]


async def test_reconcile_confirms_a_removal_once_the_lock_no_longer_lists_it(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    booking = await booking_on(device, runtime)
    await settle(runtime)
    fake.program()
    clock.current = END + timedelta(minutes=15)
    await settle(runtime)
    code = await AccessCode.get(booking=booking)
    assert code.state == AccessCodeState.REMOVING
    fake.program()  # off the lock; the webhook is lost

    report = await reconciled(runtime, await Lock.get(key="bay7"))

    await code.refresh_from_db()
    assert report.removals_confirmed == [code.id]
    assert code.state == AccessCodeState.REMOVED
    assert (await reconciled(runtime, await Lock.get(key="bay7"))).clean


async def two_seam_doors(
    fake: FakeSeam, runtime: Runtime, device: str, gate_provider: str
) -> Booking:
    """Bay 7 on Seam, behind a shared gate on ``gate_provider``."""
    yard = await Location.create(slug="yard", name="Yard", timezone="America/New_York")
    asset = await Asset.create(code="Q7", label="Bay 7", location=yard, currency="USD")
    bay = await Lock.create(
        key="bay7",
        provider="seam",
        device_id=device,
        label="Bay 7",
        timezone="America/New_York",
        location=yard,
    )
    gate_device = fake.add_device(name="Yard gate") if gate_provider == "seam" else "sim-gate"
    await Lock.create(
        key="gate",
        provider=gate_provider,
        device_id=gate_device,
        label="Gate",
        timezone="America/New_York",
        location=yard,
        shared=True,
    )
    await AssetLock.create(asset=asset, lock=bay)
    return await booked(runtime, asset.id, START, END, reference="KSEAM2", phone="+15550100002")


async def test_a_bookings_seam_locks_share_one_pin_through_seams_common_code_key(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    await two_seam_doors(fake, runtime, device, "seam")
    await settle(runtime)

    codes = list(fake.access_codes.values())
    assert len(codes) == 2
    assert (
        codes[0]["common_code_key"] and codes[0]["common_code_key"] == codes[1]["common_code_key"]
    )
    assert codes[0]["code"] == codes[1]["code"]


async def test_no_common_code_key_when_one_of_the_bookings_locks_is_not_on_seam(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, device = seam
    clock.current = START - timedelta(hours=2)
    await two_seam_doors(fake, runtime, device, "simulated")
    await settle(runtime)

    [code] = fake.access_codes.values()
    assert code["common_code_key"] is None


async def test_a_seam_lock_with_a_rule_keyturn_does_not_know_gets_the_pin_seam_chooses(
    seam: tuple[FakeSeam, Runtime, str], clock: FakeClock
) -> None:
    fake, runtime, _ = seam
    device = fake.add_device(
        name="Bay 8", code_constraints=({"constraint_type": "no_leading_nine"},)
    )
    clock.current = START - timedelta(hours=2)
    provider = runtime.access.providers["seam"]
    booking = await booking_on(device, runtime)
    lock = await Lock.get(key="bay7")
    lock.code_constraints = constraints_to_json((await provider.get_device(device)).constraints)
    await lock.save()
    await AccessCode.filter(booking=booking).delete()
    async with in_transaction() as conn:
        outcome = await runtime.access.plan_booking_codes(conn, booking)
        await stage_outcome(conn, outcome, clock.now())
    await settle(runtime)

    code = await AccessCode.get(booking=booking)
    [created] = fake.access_codes.values()
    assert created["code"] and runtime.access.sealer.open(code.pin_encrypted) == created["code"]
    assert not code.offline
