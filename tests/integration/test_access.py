"""The access-code lifecycle on the simulated lock: a PIN works exactly inside its window."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from bot.app import Runtime
from flows.access import REVOKE_TIMER, AccessPlanError
from flows.effects import Outcome
from flows.staging import run_unit, stage_outcome
from flows.timers import TimerFired
from locks import CodeRequest, LockRejected, ProgrammedCode, RejectionReason
from locks.windows import AccessWindow
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    Booking,
    Lock,
    OpsAlert,
    OutboxEffect,
    StaffMember,
)
from tests.conftest import FakeClock
from tests.integration.conftest import (
    END,
    START,
    codes_of,
    confirmed_booking,
    keypad,
    reconciled,
    settle,
    simulated,
)


async def programmed_booking(runtime: Runtime, clock: FakeClock) -> Booking:
    """A confirmed booking two hours before it starts, its codes programmed."""
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    return booking


async def moved(runtime: Runtime, booking: Booking, window: AccessWindow) -> list[str]:
    """Move the booking's codes to ``window`` as an extension does; the locks whose PIN changed."""
    async with in_transaction() as conn:
        outcome, replaced = await runtime.access.move_window(conn, booking, window)
        await stage_outcome(conn, outcome, runtime.clock.now())
    return replaced


async def test_pin_works_exactly_inside_the_buffered_window(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await confirmed_booking(runtime)
    codes = await codes_of(booking)
    assert sorted(c.lock.key for c in codes) == ["harbor-gate", "harbor-t1"]
    pins = {runtime.access.sealer.open(c.pin_encrypted) for c in codes}
    assert len(pins) == 1, "one PIN opens the item and the shared gate"
    [pin] = pins
    assert all(c.starts_at == START - timedelta(minutes=15) for c in codes)
    assert all(c.ends_at == END + timedelta(minutes=15) for c in codes)
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.PENDING}, "not yet"
    clock.current = START - timedelta(hours=24)  # the programming lead time
    await settle(runtime)
    codes = await codes_of(booking)
    assert {c.state for c in codes} == {AccessCodeState.SET}
    gate = next(c.lock for c in codes if c.lock.shared)
    opens = START - timedelta(minutes=15)
    closes = END + timedelta(minutes=15)
    assert not await keypad(runtime, gate, pin, opens - timedelta(seconds=1))
    assert await keypad(runtime, gate, pin, opens)
    assert await keypad(runtime, gate, pin, closes - timedelta(seconds=1))
    assert not await keypad(runtime, gate, pin, closes)
    assert not await keypad(runtime, gate, "918273", START)
    clock.current = closes
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    assert not await keypad(runtime, gate, pin, closes - timedelta(minutes=1)), "gone from the lock"


async def test_an_offline_lock_is_retried_and_alerted_before_the_window(
    runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=3)  # confirmed close to the start: program at once
    simulated(runtime).offline.add("sim-harbor-t1")
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    states = {c.lock.key: c.state for c in await codes_of(booking)}
    assert states == {"harbor-gate": AccessCodeState.SET, "harbor-t1": AccessCodeState.PROGRAMMING}
    clock.current = START - timedelta(hours=1)  # the confirmation deadline
    await settle(runtime)
    alert = await OpsAlert.get(kind="code_not_set")
    assert alert.resolved_at is None and "Trailer Bay 1" in str(alert.params["lock"])
    simulated(runtime).offline.clear()
    clock.advance(timedelta(minutes=30))
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.SET}


async def test_cancellation_revokes_at_once(runtime: Runtime, clock: FakeClock) -> None:
    booking = await programmed_booking(runtime, clock)
    codes = await codes_of(booking)
    pin = runtime.access.sealer.open(codes[0].pin_encrypted)
    async with in_transaction() as conn:
        outcome = await runtime.access.revoke(conn, codes, actor="renter:1", reason="cancelled")
        await stage_outcome(conn, outcome, clock.now())
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    assert not await keypad(runtime, codes[0].lock, pin, START + timedelta(hours=1))
    clock.current = END + timedelta(hours=1)
    await settle(runtime)  # the end-of-window timer was cancelled: nothing left to do
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}


async def test_a_code_set_by_a_worker_that_died_unrecorded_is_taken_off_on_cancel(
    runtime: Runtime, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.current = START - timedelta(hours=2)
    lock_provider = simulated(runtime)
    reached_lock = lock_provider.create_code

    async def dies_after_the_lock_answered(request: CodeRequest) -> ProgrammedCode:
        await reached_lock(request)
        raise ConnectionResetError("the worker died before recording the code")

    monkeypatch.setattr(lock_provider, "create_code", dies_after_the_lock_answered)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    codes = await codes_of(booking)
    assert {c.provider_ref for c in codes} == {None}, "nothing recorded"
    pin = runtime.access.sealer.open(codes[0].pin_encrypted)
    gate = next(c.lock for c in codes if c.lock.shared)
    assert await keypad(runtime, gate, pin, START), "yet the codes are on the locks"
    monkeypatch.undo()
    async with in_transaction() as conn:
        outcome = await runtime.access.revoke(conn, codes, actor="renter:1", reason="cancelled")
        await stage_outcome(conn, outcome, clock.now())
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    for code in codes:
        assert not await keypad(runtime, code.lock, pin, START), code.lock.key
    clock.advance(timedelta(minutes=5))  # the interrupted set attempts come round again
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    for code in codes:
        assert await lock_provider.list_codes(code.lock.device_id) == [], code.lock.key


async def test_a_refusal_that_comes_after_a_revocation_programs_nothing_new(
    runtime: Runtime, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)

    async def revoked_meanwhile_then_refused(request: CodeRequest) -> ProgrammedCode:
        # The renter cancels while the lock thinks; the removal has run by the time it answers.
        await AccessCode.filter(booking=booking).update(state=AccessCodeState.REMOVED)
        raise LockRejected(RejectionReason.DUPLICATE_CODE, "the lock has this PIN already")

    monkeypatch.setattr(simulated(runtime), "create_code", revoked_meanwhile_then_refused)
    await settle(runtime)
    monkeypatch.undo()
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    assert not await OutboxEffect.filter(idempotency_key__endswith=":fresh").exists()
    for code in await codes_of(booking):
        assert await simulated(runtime).list_codes(code.lock.device_id) == []


async def test_a_code_revoked_before_programming_time_is_not_looked_for_on_the_lock(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await confirmed_booking(runtime)  # days ahead: nothing programmed yet
    await settle(runtime)
    simulated(runtime).offline.update({"sim-harbor-t1", "sim-harbor-gate"})
    codes = await codes_of(booking)
    async with in_transaction() as conn:
        outcome = await runtime.access.revoke(conn, codes, actor="renter:1", reason="cancelled")
        await stage_outcome(conn, outcome, clock.now())
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}


async def test_an_extension_moves_the_window_on_the_lock(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    new_end = END + timedelta(hours=2)
    window = AccessWindow(START - timedelta(minutes=15), new_end + timedelta(minutes=15))
    replaced = await moved(runtime, booking, window)
    assert replaced == []
    await settle(runtime)
    codes = await codes_of(booking)
    pin = runtime.access.sealer.open(codes[0].pin_encrypted)
    assert await keypad(runtime, codes[0].lock, pin, END + timedelta(hours=1))
    clock.current = END + timedelta(minutes=30)  # the old window's end passes
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.SET}
    clock.current = new_end + timedelta(minutes=15)
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}


async def test_a_revocation_timer_firing_after_the_window_moved_later_revokes_nothing(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    [code, *_] = await codes_of(booking)
    old_end = code.ends_at
    # The extension commits while the old revocation timer is already firing.
    clock.current = old_end
    window = AccessWindow(code.starts_at, old_end + timedelta(hours=2))
    await moved(runtime, booking, window)
    late = TimerFired(0, REVOKE_TIMER, None, {"code": code.id}, old_end, clock.now())
    outcome = await runtime.access.on_revoke_due(late)
    async with in_transaction() as conn:
        await stage_outcome(conn, outcome, clock.now())
    assert not await OutboxEffect.filter(kind="access.remove").exists()
    await settle(runtime)
    code = await AccessCode.get(id=code.id)
    assert code.state == AccessCodeState.SET and code.ends_at == window.ends_at
    pin = runtime.access.sealer.open(code.pin_encrypted)
    lock = await Lock.get(id=code.lock_id)
    assert await keypad(runtime, lock, pin, old_end + timedelta(hours=1))


async def test_an_extension_applied_just_after_the_codes_were_revoked_plans_new_ones(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    codes = await codes_of(booking)
    old_end = codes[0].ends_at
    clock.current = old_end
    await settle(runtime)  # the window ended: the codes are revoked
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    window = AccessWindow(codes[0].starts_at, old_end + timedelta(hours=2))
    replaced = await moved(runtime, booking, window)
    assert sorted(replaced) == sorted(c.lock.label for c in codes), "the renter hears of it"
    await settle(runtime)
    new = [c for c in await codes_of(booking) if c.state == AccessCodeState.SET]
    assert len(new) == len(codes) and all(c.ends_at == window.ends_at for c in new)
    pin = runtime.access.sealer.open(new[0].pin_encrypted)
    assert await keypad(runtime, new[0].lock, pin, old_end + timedelta(hours=1))


async def test_a_pin_the_lock_already_holds_is_replaced_by_a_fresh_one(
    runtime: Runtime, clock: FakeClock
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    [code] = [c for c in await codes_of(booking) if c.lock.key == "harbor-t1"]
    planned = runtime.access.sealer.open(code.pin_encrypted)
    # Someone set the same PIN on the lock by hand, outside Keyturn.
    await simulated(runtime).create_code(
        CodeRequest(
            "sim-harbor-t1", planned, clock.now(), END + timedelta(days=9), "by hand", "UTC"
        )
    )
    await settle(runtime)
    await code.refresh_from_db()
    # Adopting the hand-made code would be wrong only if its window differed: it does, so the
    # code gets a fresh PIN and is set.
    assert code.state == AccessCodeState.SET
    assert runtime.access.sealer.open(code.pin_encrypted) != planned
    assert await OpsAlert.filter(kind="code_rejected").count() == 1


async def test_a_fresh_pin_for_an_item_never_is_the_gate_pin(
    runtime: Runtime, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An item whose PIN waits for its pickup check has a PIN apart from the gate's: a PIN
    chosen again after the lock refused it stays apart too."""
    await Asset.filter(code="T1").update(pin_after_checklist=True)
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    codes = {c.lock.key: c for c in await codes_of(booking)}
    sealer = runtime.access.sealer
    gate_pin = sealer.open(codes["harbor-gate"].pin_encrypted)
    planned = sealer.open(codes["harbor-t1"].pin_encrypted)
    assert gate_pin != planned
    await simulated(runtime).create_code(
        CodeRequest(
            "sim-harbor-t1", planned, clock.now(), END + timedelta(days=9), "by hand", "UTC"
        )
    )

    def first_free(constraints: object, taken: Collection[str]) -> str:
        # The PIN generator's first free choice, made the gate's PIN where nothing keeps it out.
        return next(pin for pin in (gate_pin, "246813") if pin not in taken)

    monkeypatch.setattr("flows.access.programming.generate_pin", first_free)
    await settle(runtime)
    item = await AccessCode.get(id=codes["harbor-t1"].id).prefetch_related("lock")
    assert item.state == AccessCodeState.SET
    assert sealer.open(item.pin_encrypted) == "246813" != gate_pin
    assert not await keypad(runtime, item.lock, gate_pin, START)


async def test_reconcile_removes_strays_and_reprograms_missing_codes(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    lock = await Lock.get(key="harbor-t1")
    [code] = [c for c in await codes_of(booking) if c.lock.key == "harbor-t1"]
    provider = simulated(runtime)
    assert code.provider_ref is not None
    await provider.delete_code(lock.device_id, code.provider_ref)  # lost on the lock
    await provider.create_code(
        CodeRequest(lock.device_id, "583920", clock.now(), END, "stray", "UTC")
    )
    report = await reconciled(runtime, lock)
    assert len(report.strays_removed) == 1 and report.reprogrammed == [code.id]
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.SET
    pins = {c.pin for c in await provider.list_codes(lock.device_id)}
    assert pins == {runtime.access.sealer.open(code.pin_encrypted)}
    assert await OpsAlert.filter(kind="lock_drift").count() == 1
    assert (await reconciled(runtime, lock)).clean


async def test_staff_codes_are_scoped_timed_and_revocable(
    runtime: Runtime, clock: FakeClock
) -> None:
    support = await StaffMember.filter(role="support").first()
    assert support is not None and support.location_scope
    elsewhere = await Lock.exclude(location__slug__in=support.location_scope).first()
    assert elsewhere is not None
    window = AccessWindow(clock.now(), clock.now() + timedelta(hours=2))
    async with in_transaction() as conn:
        with pytest.raises(AccessPlanError):
            await runtime.access.plan_staff_code(conn, support, elsewhere, window, "Cleaning")
    inside = await Lock.filter(location__slug=support.location_scope[0]).first()
    assert inside is not None
    async with in_transaction() as conn:
        outcome = await runtime.access.plan_staff_code(conn, support, inside, window, "Cleaning")
        await stage_outcome(conn, outcome, clock.now())
    await settle(runtime)
    code = await AccessCode.get(staff=support)
    assert code.state == AccessCodeState.SET
    pin = runtime.access.sealer.open(code.pin_encrypted)
    assert await keypad(runtime, inside, pin, clock.now() + timedelta(hours=1))
    assert not await keypad(runtime, inside, pin, clock.now() + timedelta(hours=3))
    clock.current += timedelta(hours=2)
    await settle(runtime)
    await code.refresh_from_db()
    assert code.state == AccessCodeState.REMOVED


async def test_a_failing_revocation_is_retried_and_keeps_ops_told(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    simulated(runtime).offline.add("sim-harbor-t1")
    clock.current = END + timedelta(minutes=15)
    for _ in range(12):
        await settle(runtime)
        clock.advance(timedelta(minutes=20))
    states = {c.lock.key: c.state for c in await codes_of(booking)}
    assert states == {"harbor-gate": AccessCodeState.REMOVED, "harbor-t1": AccessCodeState.REMOVING}
    [alert] = await OpsAlert.filter(kind="effect_failing", resolved_at__isnull=True)
    assert alert.occurrences >= 2, "raised again while the code stays on the lock"
    simulated(runtime).offline.clear()
    clock.advance(timedelta(hours=1))
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    await alert.refresh_from_db()
    assert alert.resolved_at is not None


async def test_the_scheduled_reconciliation_runs_and_sets_its_next_run(
    runtime: Runtime, clock: FakeClock
) -> None:
    from flows.access import RECONCILE_KEY, RECONCILE_TIMER
    from storage.models import Timer, TimerState
    from storage.timers import ensure_timer

    assert await ensure_timer(
        kind=RECONCILE_TIMER, key=RECONCILE_KEY, due_at=clock.now(), now=clock.now()
    )
    assert not await ensure_timer(
        kind=RECONCILE_TIMER, key=RECONCILE_KEY, due_at=clock.now(), now=clock.now()
    )
    lock = await Lock.get(key="harbor-s1")
    await simulated(runtime).create_code(
        CodeRequest(
            lock.device_id, "583920", clock.now(), clock.now() + timedelta(days=1), "stray", "UTC"
        )
    )
    await settle(runtime)
    assert await simulated(runtime).list_codes(lock.device_id) == []
    [next_run] = await Timer.filter(key=RECONCILE_KEY, state=TimerState.PENDING)
    assert next_run.due_at == clock.now() + timedelta(hours=6)


async def test_codes_with_different_windows_each_say_their_own(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await confirmed_booking(runtime)
    codes = await codes_of(booking)
    gate = next(c for c in codes if c.lock.shared)
    # The gate's code was replaced by an offline one in whole hours (09:00–15:00 at Harbor Yard).
    await AccessCode.filter(id=gate.id).update(
        starts_at=START - timedelta(hours=1), ends_at=END + timedelta(hours=1), offline=True
    )
    text = await runtime.journey.pin_text(booking, await codes_of(booking), "en")
    lines = text.splitlines()
    [gate_line] = [line for line in lines if line.startswith(gate.lock.label)]
    assert "9:00" in gate_line and "3:00" in gate_line
    [item_line] = [line for line in lines if line.startswith("T1") or "trailer" in line.lower()]
    assert "9:45" in item_line and "2:15" in item_line
    assert "within 24 hours" in text


async def test_a_lock_with_pin_rules_keyturn_does_not_know_raises_one_alert_not_a_crash(
    runtime: Runtime, clock: FakeClock
) -> None:
    await Lock.filter(key="harbor-t1").update(
        code_constraints={"lengths": [6], "unknown_rules": ["digits_must_rhyme"]}
    )
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    codes = {c.lock.key: c for c in await codes_of(booking)}
    assert codes["harbor-t1"].state == AccessCodeState.FAILED, "no PIN guessed for it"
    assert codes["harbor-t1"].pin_encrypted == ""
    assert codes["harbor-gate"].state == AccessCodeState.SET, "the gate is unaffected"
    [alert] = await OpsAlert.filter(kind="pin_rules_unknown")
    assert "digits_must_rhyme" in str(alert.params) and alert.resolved_at is None

    for _ in range(3):  # past the deadline, which asks for a fresh PIN
        clock.advance(timedelta(minutes=30))
        await settle(runtime)
    assert await OpsAlert.filter(kind="pin_rules_unknown").count() == 1
    assert await OpsAlert.filter(kind="effect_failing").count() == 0
    assert not await OutboxEffect.filter(kind="access.set", state="pending", attempts__gt=0)


async def test_a_code_revoked_while_the_lock_programs_it_is_taken_off_again(
    runtime: Runtime, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    provider = simulated(runtime)
    create = provider.create_code
    cancelled: list[str] = []

    async def cancelled_meanwhile(request: CodeRequest) -> ProgrammedCode:
        made = await create(request)
        if not cancelled:  # the renter cancels while the lock answers
            cancelled.append(made.provider_ref)

            async def cancel(conn: BaseDBAsyncClient) -> Outcome:
                codes = await AccessCode.filter(booking=booking).using_db(conn)
                return await runtime.access.revoke(conn, codes, actor="renter", reason="x")

            await run_unit(cancel, clock.now())
        return made

    monkeypatch.setattr(provider, "create_code", cancelled_meanwhile)
    await settle(runtime)
    clock.advance(timedelta(minutes=5))
    await settle(runtime)
    assert cancelled
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVED}
    for lock in {c.lock.device_id for c in await codes_of(booking)}:
        assert await provider.list_codes(lock) == [], "nothing left on the locks"
