"""Pushed lock events: applied once, codes follow the lock, an outage is one alert."""

from __future__ import annotations

from datetime import timedelta

from bot.app import Runtime
from bot.lock_routes import apply_lock_event
from flows.lock_events import LockEvent, LockEventKind
from storage.models import AccessCode, AccessCodeState, Lock, OpsAlert
from tests.conftest import FakeClock
from tests.integration.conftest import START, confirmed_booking, settle, simulated


def event(kind: LockEventKind, n: int, at: FakeClock, **fields: object) -> LockEvent:
    return LockEvent(
        provider="simulated",
        event_id=f"evt-{n}",
        kind=kind,
        device_id=str(fields.pop("device_id", "sim-harbor-t1")),
        occurred_at=at.now(),
        **fields,
    )


async def test_an_outage_is_one_alert_resolved_when_the_lock_is_back(
    runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=2)
    await confirmed_booking(runtime)
    for n in range(5):
        assert await apply_lock_event(event(LockEventKind.DEVICE_OFFLINE, n, clock), clock.now())
    assert not await apply_lock_event(event(LockEventKind.DEVICE_OFFLINE, 0, clock), clock.now())
    [alert] = await OpsAlert.filter(kind="lock_offline")
    assert alert.occurrences == 5 and alert.params["at_risk"] == 1
    assert (await Lock.get(device_id="sim-harbor-t1")).online is False
    await apply_lock_event(event(LockEventKind.DEVICE_ONLINE, 9, clock), clock.now())
    await alert.refresh_from_db()
    assert alert.resolved_at is not None and alert.resolved_by == "the lock"


async def test_a_code_removed_behind_keyturns_back_is_put_back(
    runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    code = await AccessCode.get(booking=booking, lock__key="harbor-t1")
    assert code.provider_ref is not None
    await simulated(runtime).delete_code("sim-harbor-t1", code.provider_ref)
    removed = event(LockEventKind.CODE_REMOVED, 1, clock, code_ref=code.provider_ref)
    assert await apply_lock_event(removed, clock.now())
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.SET
    assert len(await simulated(runtime).list_codes("sim-harbor-t1")) == 1


async def test_a_code_the_lock_failed_to_set_gets_a_fresh_pin_and_an_alert(
    runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    code = await AccessCode.get(booking=booking, lock__key="harbor-t1")
    old_pin = code.pin_encrypted
    failed = event(
        LockEventKind.CODE_FAILED,
        1,
        clock,
        code_ref=code.provider_ref,
        detail="duplicate_code_on_device",
    )
    assert await apply_lock_event(failed, clock.now())
    assert await OpsAlert.filter(kind="code_rejected").count() == 1
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.SET and code.pin_encrypted != old_pin


async def test_a_failure_reported_for_a_code_being_removed_does_not_set_it_again(
    runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    code = await AccessCode.get(booking=booking, lock__key="harbor-t1")
    simulated(runtime).offline.add("sim-harbor-t1")  # its removal waits for the lock
    await AccessCode.filter(id=code.id).update(state=AccessCodeState.REMOVING)
    failed = event(LockEventKind.CODE_FAILED, 1, clock, code_ref=code.provider_ref, detail="x")
    assert await apply_lock_event(failed, clock.now())
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.REMOVING, "still on its way off the lock"
    assert await OpsAlert.filter(kind="code_rejected").count() == 0
