"""A code whose window has ended ends up off its lock whatever fails in between: a revocation
whose commit is lost is redone, and the reconcile queues again a removal that was lost, never a
second one while one is pending."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app import Runtime
from bot.timers import TimerRunner
from flows.access import RECONCILE_KEY, RECONCILE_TIMER, REVOKE_TIMER
from flows.effects import Outcome
from flows.timers import TimerFired
from locks import LockUnavailable
from storage.models import (
    AccessCode,
    AccessCodeState,
    Booking,
    EffectState,
    OutboxEffect,
    Timer,
    TimerState,
)
from storage.timers import ensure_timer
from tests.conftest import FakeClock
from tests.integration.conftest import (
    START,
    codes_of,
    confirmed_booking,
    keypad,
    reconciled,
    settle,
    simulated,
)


async def programmed_booking(runtime: Runtime, clock: FakeClock) -> Booking:
    """A confirmed booking two hours before it starts, its codes on the locks."""
    clock.current = START - timedelta(hours=2)
    booking = await confirmed_booking(runtime)
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.SET}
    return booking


async def assert_off_the_locks(runtime: Runtime, booking: Booking) -> None:
    """Every code is removed, and its PIN no longer opens its lock even inside its window."""
    codes = await codes_of(booking)
    assert {c.state for c in codes} == {AccessCodeState.REMOVED}
    for code in codes:
        pin = runtime.access.sealer.open(code.pin_encrypted)
        assert await simulated(runtime).list_codes(code.lock.device_id) == [], code.lock.key
        inside = code.ends_at - timedelta(minutes=1)
        assert not await keypad(runtime, code.lock, pin, inside), code.lock.key


async def test_a_revocation_whose_worker_lost_its_claim_before_committing_is_done(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    clock.current = (await codes_of(booking))[0].ends_at

    async def outlasts_its_lease(event: TimerFired) -> Outcome:
        outcome = await runtime.access.on_revoke_due(event)
        # The worker stalls before it commits; its lease runs out and another worker claims
        # the revocation timers and fires them. The stalled worker's commit is then refused.
        clock.advance(stalled.lease)
        await runtime.timers.run_due()
        return outcome

    stalled = TimerRunner(
        clock, {**runtime.timers.handlers, REVOKE_TIMER: outlasts_its_lease}, worker="stalled"
    )
    await stalled.run_due()
    await settle(runtime)
    await assert_off_the_locks(runtime, booking)


async def test_a_revocation_whose_worker_died_before_committing_is_done_on_the_retry(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    clock.current = (await codes_of(booking))[0].ends_at

    async def dies_before_committing(event: TimerFired) -> Outcome:
        await runtime.access.on_revoke_due(event)
        raise ConnectionResetError("the database went away before the commit")

    dying = TimerRunner(
        clock, {**runtime.timers.handlers, REVOKE_TIMER: dies_before_committing}, worker="dying"
    )
    await dying.run_due()
    assert not await OutboxEffect.filter(kind="access.remove").exists(), "nothing committed"
    clock.advance(timedelta(minutes=5))  # the timers' retry comes round
    await settle(runtime)
    await assert_off_the_locks(runtime, booking)


async def stranded(booking: Booking) -> None:
    """The codes as a revocation whose removal was lost left them (an earlier release marked
    them removing outside the timer's transaction): removing, the timer done, no removal."""
    for code in await codes_of(booking):
        await AccessCode.filter(id=code.id).update(state=AccessCodeState.REMOVING)
        await Timer.filter(key=f"access:revoke:{code.id}").update(state=TimerState.DONE, key=None)


async def test_the_scheduled_reconcile_queues_a_lost_removal_again(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    clock.current = (await codes_of(booking))[0].ends_at
    await stranded(booking)
    await settle(runtime)
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVING}
    assert await simulated(runtime).list_codes("sim-harbor-t1"), "left on the lock"

    await ensure_timer(kind=RECONCILE_TIMER, key=RECONCILE_KEY, due_at=clock.now(), now=clock.now())
    await settle(runtime)
    await assert_off_the_locks(runtime, booking)


async def test_a_lost_removal_is_queued_again_even_while_its_lock_is_unreachable(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    clock.current = (await codes_of(booking))[0].ends_at
    await stranded(booking)
    t1 = next(c.lock for c in await codes_of(booking) if c.lock.key == "harbor-t1")
    simulated(runtime).offline.add(t1.device_id)
    gate = next(c.lock for c in await codes_of(booking) if c.lock.shared)
    report = await reconciled(runtime, gate)
    assert len(report.removals_requeued) == 1 and not report.strays_removed
    with pytest.raises(LockUnavailable):  # it cannot be compared, yet its removal is queued
        await reconciled(runtime, t1)
    await settle(runtime)
    states = {c.lock.key: c.state for c in await codes_of(booking)}
    assert states == {"harbor-gate": AccessCodeState.REMOVED, "harbor-t1": AccessCodeState.REMOVING}
    simulated(runtime).offline.clear()
    clock.advance(timedelta(hours=1))
    await settle(runtime)
    await assert_off_the_locks(runtime, booking)


async def test_reconcile_queues_no_second_removal_while_one_is_pending(
    runtime: Runtime, clock: FakeClock
) -> None:
    booking = await programmed_booking(runtime, clock)
    simulated(runtime).offline.update({"sim-harbor-t1", "sim-harbor-gate"})
    clock.current = (await codes_of(booking))[0].ends_at
    await settle(runtime)  # the removals are queued and fail while the locks are unreachable
    assert {c.state for c in await codes_of(booking)} == {AccessCodeState.REMOVING}
    simulated(runtime).offline.clear()
    for code in await codes_of(booking):  # back before the removals' retry is due
        report = await reconciled(runtime, code.lock)
        assert report.removals_requeued == [] and report.strays_removed == [], code.lock.key
    removals = await OutboxEffect.filter(kind="access.remove")
    assert len(removals) == 2 and {e.state for e in removals} == {EffectState.PENDING}
    clock.advance(timedelta(hours=1))
    await settle(runtime)
    await assert_off_the_locks(runtime, booking)
    assert await OutboxEffect.filter(kind="access.remove").count() == 2
