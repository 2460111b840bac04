"""Code creations go out at each device's pace: a lock that lost every code gets them back, all
of them, at no more than its provider takes a minute (Seam: 10), and none counts as a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime
from bot.config import Settings
from flows.access import REMOVE_EFFECT, SET_EFFECT, UPDATE_EFFECT
from flows.staging import stage_outcome
from locks import CodeRequest
from locks.seam import SeamLockProvider
from locks.simulated import SimulatedLockProvider
from locks.windows import AccessWindow
from storage.models import (
    AccessCode,
    AccessCodeState,
    EffectState,
    Location,
    Lock,
    OpsAlert,
    OutboxEffect,
    SimulatedCode,
    StaffMember,
    StaffRole,
)
from storage.pacing import PacedCall, take_slot
from storage.sealing import Sealer
from tests.conftest import FakeClock
from tests.fakes.seam import API_KEY, FakeSeam, iso
from tests.fakes.server import running
from tests.integration.conftest import reconciled, settle

SEAM_LIMIT = 10  # access code creations a minute per device (docs.seam.co)


def busiest_minute(moments: list[datetime]) -> int:
    """The most of ``moments`` inside any one minute."""
    ordered = sorted(moments)
    return max(
        (sum(1 for m in ordered if at - timedelta(minutes=1) < m <= at) for at in ordered),
        default=0,
    )


async def staff_codes(runtime: Runtime, lock: Lock, count: int) -> list[AccessCode]:
    """``count`` staff codes planned on ``lock`` at once (an inventory import, a big crew)."""
    member = await StaffMember.create(telegram_user_id=4242, name="Crew", role=StaffRole.MANAGER)
    now = runtime.clock.now()
    window = AccessWindow(now, now + timedelta(hours=8))
    for n in range(count):
        async with in_transaction() as conn:
            outcome = await runtime.access.plan_staff_code(conn, member, lock, window, f"Crew {n}")
            await stage_outcome(conn, outcome, now)
    return await AccessCode.filter(lock_id=lock.id).order_by("id")


async def run_until_set(runtime: Runtime, clock: FakeClock, codes: list[AccessCode]) -> None:
    """Run timers and effects as a worker does, its clock moving a few seconds at a time."""
    for _ in range(200):
        await settle(runtime)
        states = await AccessCode.filter(id__in=[c.id for c in codes]).values_list(
            "state", flat=True
        )
        if set(states) == {AccessCodeState.SET}:
            return
        clock.advance(timedelta(seconds=3))
    raise AssertionError("the codes were never all set")


async def work_for(runtime: Runtime, clock: FakeClock, *, steps: int, every: timedelta) -> None:
    """A worker's timers and effects run ``steps`` times, its clock moving ``every`` between."""
    for _ in range(steps):
        await settle(runtime)
        clock.advance(every)


async def assert_no_failure() -> None:
    """No effect failed an attempt and nobody was alerted for one."""
    effects = await OutboxEffect.filter(kind=SET_EFFECT)
    assert effects and {e.state for e in effects} == {EffectState.DONE}
    assert {e.attempts for e in effects} == {1}, "each code was sent once, on its first attempt"
    assert {e.last_error for e in effects} == {""}
    assert not await OpsAlert.filter(kind="effect_failing").exists()


async def test_a_reset_lock_gets_all_its_codes_back_ten_a_minute_without_a_failure(
    runtime: Runtime, clock: FakeClock
) -> None:
    lock = await Lock.get(key="harbor-t1")
    codes = await staff_codes(runtime, lock, 30)
    planned_at = clock.now()
    await run_until_set(runtime, clock, codes)
    first = await SimulatedCode.filter(device_id=lock.device_id).values_list(
        "created_at", flat=True
    )
    assert len(first) == 30 and busiest_minute(list(first)) <= SEAM_LIMIT, "planned in bulk"
    assert clock.now() - planned_at >= timedelta(minutes=2), "spread over three minutes"

    clock.advance(timedelta(minutes=5))
    reset_at = clock.now()
    await SimulatedCode.filter(device_id=lock.device_id).update(removed_at=reset_at)
    report = await reconciled(runtime, lock)
    assert sorted(report.reprogrammed) == [c.id for c in codes]
    await run_until_set(runtime, clock, codes)

    simulated = runtime.locks["simulated"]
    assert isinstance(simulated, SimulatedLockProvider)
    held = await simulated.list_codes(lock.device_id)
    assert len(held) == 30
    assert {c.provider_ref for c in held} == {
        c.provider_ref for c in await AccessCode.filter(lock_id=lock.id)
    }
    again = await SimulatedCode.filter(
        device_id=lock.device_id, created_at__gte=reset_at
    ).values_list("created_at", flat=True)
    assert len(again) == 30 and busiest_minute(list(again)) <= SEAM_LIMIT
    assert simulated.rate_limited == 0, "sent at the lock's pace, never past it"
    await assert_no_failure()


async def test_codes_waiting_for_a_worker_that_was_down_still_go_out_at_the_pace(
    runtime: Runtime, clock: FakeClock
) -> None:
    lock = await Lock.get(key="harbor-t1")
    codes = await staff_codes(runtime, lock, 25)
    await settle(runtime)  # the first ten go out; the rest hold their slots
    assert await SimulatedCode.filter(device_id=lock.device_id).count() == SEAM_LIMIT
    clock.advance(timedelta(minutes=7))  # every worker was down past all those slots
    await run_until_set(runtime, clock, codes)
    simulated = runtime.locks["simulated"]
    assert isinstance(simulated, SimulatedLockProvider)
    made = await SimulatedCode.filter(device_id=lock.device_id).values_list("created_at", flat=True)
    assert len(made) == 25 and busiest_minute(list(made)) <= SEAM_LIMIT
    assert simulated.rate_limited == 0, "the late ones took new slots rather than all going"
    await assert_no_failure()


@pytest.fixture
async def seam_world(database: str, clock: FakeClock) -> AsyncIterator[tuple[FakeSeam, Runtime]]:
    fake = FakeSeam(now=clock.now)
    async with running(fake.app()) as base:
        key = Fernet.generate_key().decode()
        settings = Settings.from_env(
            {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": key}
        )
        provider = SeamLockProvider(API_KEY, base_url=base, timeout=5)
        runtime = build_runtime(
            settings,
            clock=clock,
            locks={"seam": provider, "simulated": SimulatedLockProvider(Sealer(key), clock.now)},
        )
        yield fake, runtime
        await provider.aclose()


async def seam_lock(fake: FakeSeam) -> Lock:
    yard = await Location.create(slug="yard", name="Yard", timezone="America/New_York")
    device = fake.add_device(name="Bay 7 keypad")
    return await Lock.create(
        key="bay7",
        provider="seam",
        device_id=device,
        label="Bay 7",
        timezone="America/New_York",
        location=yard,
    )


def created_at_device(fake: FakeSeam, device: str) -> list[datetime]:
    return fake.taken.get(("/access_codes/create", device), [])


async def test_seam_gets_a_lost_locks_codes_back_within_its_rate_limit(
    seam_world: tuple[FakeSeam, Runtime], clock: FakeClock
) -> None:
    fake, runtime = seam_world
    lock = await seam_lock(fake)
    codes = await staff_codes(runtime, lock, 25)
    await work_for(runtime, clock, steps=60, every=timedelta(seconds=3))
    assert len(fake.access_codes) == 25
    fake.access_codes.clear()  # the lock was reset: Seam lists none of them any more

    clock.advance(timedelta(minutes=5))
    report = await reconciled(runtime, lock)
    assert len(report.reprogrammed) == 25
    await work_for(runtime, clock, steps=60, every=timedelta(seconds=3))

    assert len(fake.access_codes) == 25
    stored = {c.provider_ref for c in await AccessCode.filter(id__in=[c.id for c in codes])}
    assert stored == set(fake.access_codes)
    assert len(created_at_device(fake, lock.device_id)) == 50
    assert busiest_minute(created_at_device(fake, lock.device_id)) <= SEAM_LIMIT
    assert fake.rate_limited == {}, "Seam never had to refuse one"
    await assert_no_failure()


async def test_windows_corrected_on_seam_go_out_within_its_update_limit(
    seam_world: tuple[FakeSeam, Runtime], clock: FakeClock
) -> None:
    fake, runtime = seam_world
    lock = await seam_lock(fake)
    codes = await staff_codes(runtime, lock, 15)
    await work_for(runtime, clock, steps=40, every=timedelta(seconds=3))
    for code in fake.access_codes.values():  # changed in the vendor's app: a day longer
        code["ends_at"] = iso(datetime.fromisoformat(code["ends_at"]) + timedelta(days=1))
    report = await reconciled(runtime, lock)
    assert sorted(report.drift) == [c.id for c in codes]
    await work_for(runtime, clock, steps=40, every=timedelta(seconds=3))

    updates = fake.taken.get(("/access_codes/update", lock.device_id), [])
    assert len(updates) == 15 and busiest_minute(updates) <= SEAM_LIMIT
    assert fake.rate_limited == {}
    stored = {c.provider_ref: c.ends_at for c in await AccessCode.filter(lock_id=lock.id)}
    assert {
        ref: datetime.fromisoformat(c["ends_at"]) for ref, c in fake.access_codes.items()
    } == stored, "every window is Keyturn's again"
    effects = await OutboxEffect.filter(kind=UPDATE_EFFECT)
    assert len(effects) == 15 and {(e.state, e.attempts) for e in effects} == {
        (EffectState.DONE, 1)
    }


@pytest.mark.parametrize("retry_after_header", [False, True])
async def test_a_seam_refusal_for_its_rate_limit_is_waited_out_not_failed(
    seam_world: tuple[FakeSeam, Runtime], clock: FakeClock, retry_after_header: bool
) -> None:
    fake, runtime = seam_world
    fake.retry_after_header = retry_after_header
    lock = await seam_lock(fake)
    # Another application on the same Seam workspace used up the device's minute.
    fake.taken[("/access_codes/create", lock.device_id)] = [clock.now()] * SEAM_LIMIT
    [code] = await staff_codes(runtime, lock, 1)
    await settle(runtime)
    assert fake.rate_limited == {"/access_codes/create": 1}
    effect = await OutboxEffect.get(kind=SET_EFFECT)
    assert effect.attempts == 0 and effect.last_error == "", "a wait, not a failed attempt"
    waits = timedelta(seconds=61) if retry_after_header else timedelta(minutes=1)
    assert effect.next_attempt_at == clock.now() + waits

    clock.advance(timedelta(seconds=30))
    await settle(runtime)
    assert fake.rate_limited == {"/access_codes/create": 1}, "nothing sent before it was due"
    clock.advance(waits - timedelta(seconds=30))
    await settle(runtime)
    await code.refresh_from_db()
    assert code.provider_ref in fake.access_codes
    await assert_no_failure()


async def test_a_refusal_asking_to_wait_a_day_holds_the_device_back_a_quarter_hour_at_most(
    seam_world: tuple[FakeSeam, Runtime], clock: FakeClock
) -> None:
    """A 429 whose Retry-After says a day (a proxy's, a misconfigured gateway's) does not keep
    a renter's code off the lock for a day without anybody hearing of it: it is asked again
    after a quarter of an hour at most."""
    fake, runtime = seam_world
    fake.retry_after_override = 86_400
    lock = await seam_lock(fake)
    fake.taken[("/access_codes/create", lock.device_id)] = [clock.now()] * SEAM_LIMIT
    [code] = await staff_codes(runtime, lock, 1)
    await settle(runtime)
    effect = await OutboxEffect.get(kind=SET_EFFECT)
    assert effect.last_error == "" and effect.next_attempt_at == clock.now() + timedelta(minutes=15)
    clock.advance(timedelta(minutes=15))
    await settle(runtime)
    await code.refresh_from_db()
    assert code.provider_ref in fake.access_codes


async def test_strays_past_seams_deletion_limit_wait_for_the_next_pass(
    seam_world: tuple[FakeSeam, Runtime], clock: FakeClock
) -> None:
    fake, runtime = seam_world
    lock = await seam_lock(fake)
    provider = runtime.locks["seam"]
    for n in range(25):  # codes someone set in the vendor's app, ten a minute
        if n and n % SEAM_LIMIT == 0:
            clock.advance(timedelta(seconds=61))
        ends = clock.now() + timedelta(days=2)
        await provider.create_code(
            CodeRequest(lock.device_id, f"{482910 + n * 7}", clock.now(), ends, "stray", "UTC")
        )
    first = await reconciled(runtime, lock)
    assert (len(first.strays_removed), len(first.strays_stuck)) == (20, 5)
    # One refused call, which the SDK itself retries twice (it retries a DELETE on 429).
    assert fake.rate_limited == {"/access_codes/delete": 3}, "it stopped at the first refusal"
    clock.advance(timedelta(minutes=1))
    second = await reconciled(runtime, lock)
    assert (len(second.strays_removed), len(second.strays_stuck)) == (5, 0)
    assert {c["status"] for c in fake.access_codes.values()} == {"removing"}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_workers_taking_a_devices_slots_at_once_share_one_pace(
    runtime: Runtime, clock: FakeClock
) -> None:
    lock = await Lock.get(key="harbor-t1")
    window = timedelta(seconds=70)
    slots = await asyncio.gather(
        *(
            take_slot(lock.id, PacedCall.CREATION, now=clock.now(), limit=10, window=window)
            for _ in range(30)
        )
    )
    ordered = sorted(slots)
    assert ordered.count(clock.now()) == 10, "ten go out at once; the others wait"
    assert all(sum(1 for s in ordered if at - window < s <= at) <= 10 for at in ordered), (
        "no window of the pace holds more than ten"
    )
    assert ordered[-1] == clock.now() + 2 * window


async def test_removals_past_seams_deletion_limit_wait_their_turn_not_fail(
    seam_world: tuple[FakeSeam, Runtime], clock: FakeClock
) -> None:
    """A crew's 25 codes revoked at once on one Seam device: Seam takes 20 deletions a minute
    and refuses the rest; those wait for the next minute — no failed attempt, no alert — and
    every code ends up off the lock."""
    fake, runtime = seam_world
    lock = await seam_lock(fake)
    codes = await staff_codes(runtime, lock, 25)
    await work_for(runtime, clock, steps=60, every=timedelta(seconds=3))
    assert len(fake.access_codes) == 25

    async with in_transaction() as conn:
        live = await AccessCode.filter(id__in=[c.id for c in codes]).using_db(conn)
        outcome = await runtime.access.revoke(conn, live, actor="ops", reason="crew left")
        await stage_outcome(conn, outcome, clock.now())
    await work_for(runtime, clock, steps=40, every=timedelta(seconds=5))

    assert fake.rate_limited.get("/access_codes/delete"), "Seam refused the deletions past 20"
    assert {c["status"] for c in fake.access_codes.values()} <= {"removing"}
    removals = await OutboxEffect.filter(kind=REMOVE_EFFECT)
    assert len(removals) == 25 and {e.state for e in removals} == {EffectState.DONE}
    assert {e.last_error for e in removals} == {""}, "a wait is not a failure"
    assert not await OpsAlert.filter(kind="effect_failing").exists()
