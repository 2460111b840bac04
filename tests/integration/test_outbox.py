"""The outbox dispatcher: backoff, one alert for a failing effect, and one run on success."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from tortoise.transactions import in_transaction

from bot.dispatcher import OutboxDispatcher, RetryPolicy
from storage.journal import ALERT_EFFECT
from storage.models import EffectState, OpsAlert, OutboxEffect
from storage.outbox import enqueue_effect
from tests.conftest import FakeClock


class FlakyExecutor:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []
        self.succeeded: list[str] = []

    async def __call__(self, effect: OutboxEffect) -> None:
        self.calls.append(effect.idempotency_key)
        if len(self.calls) <= self.failures:
            raise ConnectionError("provider answered 503")
        self.succeeded.append(effect.idempotency_key)


async def _stage(clock: FakeClock, key: str = "e1", critical: bool = False) -> None:
    async with in_transaction() as conn:
        await enqueue_effect(
            conn, kind="poke", payload={}, idempotency_key=key, now=clock.now(), critical=critical
        )


async def _shown(effect: OutboxEffect) -> None:
    """Alerts stage their own ``alert.show`` effects; here nobody is shown them."""


def _dispatcher(clock: FakeClock, executor: FlakyExecutor, policy: RetryPolicy) -> OutboxDispatcher:
    return OutboxDispatcher(
        clock, {"poke": executor, ALERT_EFFECT: _shown}, policy=policy, rng=random.Random(7)
    )


async def _pokes(dispatcher: OutboxDispatcher, executor: FlakyExecutor) -> int:
    """One outbox pass; how many times it ran the ``poke`` effect."""
    before = len(executor.calls)
    await dispatcher.run_once()
    return len(executor.calls) - before


async def test_failing_effect_backs_off_alerts_once_and_runs_once(
    database: str, clock: FakeClock
) -> None:
    policy = RetryPolicy(base=timedelta(seconds=2), alert_after=3, give_up_after=50)
    executor = FlakyExecutor(failures=6)
    dispatcher = _dispatcher(clock, executor, policy)
    await _stage(clock)
    delays = []
    for attempt in range(1, 7):
        assert await _pokes(dispatcher, executor) == 1
        row = await OutboxEffect.get(idempotency_key="e1")
        delay = row.next_attempt_at - clock.now()
        ceiling = timedelta(seconds=2 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
        delays.append(delay)
        assert await _pokes(dispatcher, executor) == 0, "nothing runs before the backoff passed"
        clock.advance(delay)
    assert delays == sorted(delays)
    alerts = await OpsAlert.all()
    assert len(alerts) == 1 and alerts[0].kind == "effect_failing"
    assert alerts[0].resolved_at is None
    assert await _pokes(dispatcher, executor) == 1
    assert executor.succeeded == ["e1"]
    row = await OutboxEffect.get(idempotency_key="e1")
    assert row.state == EffectState.DONE and row.attempts == 7
    clock.advance(timedelta(hours=1))
    assert await _pokes(dispatcher, executor) == 0
    assert executor.succeeded == ["e1"]
    alert = await OpsAlert.get()
    assert alert.resolved_by == "dispatcher" and alert.open_key is None


async def test_an_effect_staged_twice_runs_once(database: str, clock: FakeClock) -> None:
    executor = FlakyExecutor(failures=0)
    await _stage(clock, "same")
    await _stage(clock, "same")
    await _dispatcher(clock, executor, RetryPolicy()).run_once()
    assert executor.calls == ["same"]


async def test_ordinary_effects_are_given_up_but_critical_ones_are_not(
    database: str, clock: FakeClock
) -> None:
    policy = RetryPolicy(
        base=timedelta(seconds=1), cap=timedelta(seconds=1), alert_after=2, give_up_after=4
    )
    executor = FlakyExecutor(failures=1000)
    dispatcher = _dispatcher(clock, executor, policy)
    await _stage(clock, "ordinary")
    await _stage(clock, "revoke", critical=True)
    for _ in range(10):
        await dispatcher.run_once()
        clock.advance(timedelta(seconds=2))
    ordinary = await OutboxEffect.get(idempotency_key="ordinary")
    critical = await OutboxEffect.get(idempotency_key="revoke")
    assert ordinary.state == EffectState.DEAD and ordinary.attempts == 4
    assert critical.state == EffectState.PENDING and critical.attempts == 10
    assert await OpsAlert.filter(resolved_at__isnull=True).count() == 2
    dead = await OpsAlert.get(group_key=f"effect:{ordinary.id}")
    assert dead.message_key == "ops.effect_dead"


async def test_a_claimed_effect_of_a_dead_worker_is_taken_over(
    database: str, clock: FakeClock
) -> None:
    from storage.outbox import claim_due_effects

    await _stage(clock, "orphan")
    claimed = await claim_due_effects(
        clock.now(), limit=10, lease=timedelta(minutes=2), worker="box-a/41"
    )
    assert [e.idempotency_key for e in claimed] == ["orphan"]
    assert (await OutboxEffect.get(idempotency_key="orphan")).claimed_by == "box-a/41"
    # That worker died before finishing. Within the lease nobody else takes it ...
    executor = FlakyExecutor(failures=0)
    dispatcher = _dispatcher(clock, executor, RetryPolicy())
    assert await dispatcher.run_once() == 0
    # ... after the lease another worker does.
    clock.advance(timedelta(minutes=2, seconds=1))
    assert await dispatcher.run_once() == 1
    assert executor.succeeded == ["orphan"]


async def test_a_claim_that_outlasted_its_lease_cannot_overrule_the_newer_one(
    database: str, clock: FakeClock
) -> None:
    from storage.outbox import claim_due_effects, mark_done, mark_failed

    await _stage(clock, "slow")
    lease = timedelta(minutes=2)
    [stale] = await claim_due_effects(clock.now(), limit=10, lease=lease, worker="box-a/41")
    clock.advance(lease + timedelta(seconds=1))
    [newer] = await claim_due_effects(clock.now(), limit=10, lease=lease, worker="box-b/7")
    assert (stale.attempts, newer.attempts) == (1, 2)
    # The first worker comes back late: its failure neither reschedules nor kills the effect ...
    assert not await mark_failed(stale, error="ConnectionError", retry_at=None, alerted=False)
    row = await OutboxEffect.get(idempotency_key="slow")
    assert row.state == EffectState.PENDING and row.claimed_by == "box-b/7"
    assert row.next_attempt_at == clock.now() + lease and row.last_error == ""
    # ... nor does its success end the newer claim's run; the newer claim marks it done.
    assert not await mark_done(stale, clock.now())
    assert await mark_done(newer, clock.now())
    row = await OutboxEffect.get(idempotency_key="slow")
    assert row.state == EffectState.DONE
    assert not await mark_failed(newer, error="late", retry_at=clock.now(), alerted=False)
    assert (await OutboxEffect.get(idempotency_key="slow")).state == EffectState.DONE


async def test_a_failure_reported_after_the_lease_neither_alerts_nor_undoes_the_newer_claim(
    database: str, clock: FakeClock
) -> None:
    await _stage(clock, "slow")
    started, release = asyncio.Event(), asyncio.Event()

    async def stuck_then_fails(effect: OutboxEffect) -> None:
        started.set()
        await release.wait()
        raise ConnectionError("provider answered 503")

    policy = RetryPolicy(alert_after=1, give_up_after=1)  # this first failure would alert
    first = OutboxDispatcher(
        clock, {"poke": stuck_then_fails, ALERT_EFFECT: _shown}, policy=policy, worker="box-a/41"
    )
    running = asyncio.create_task(first.run_once())
    await asyncio.wait_for(started.wait(), 5)
    clock.advance(timedelta(minutes=2, seconds=1))  # its lease runs out
    executor = FlakyExecutor(failures=0)
    second = OutboxDispatcher(
        clock, {"poke": executor, ALERT_EFFECT: _shown}, policy=policy, worker="box-b/7"
    )
    assert await second.run_once() == 1
    release.set()
    await running
    row = await OutboxEffect.get(idempotency_key="slow")
    assert row.state == EffectState.DONE and row.claimed_by == "box-b/7"
    assert executor.succeeded == ["slow"]
    assert await OpsAlert.all().count() == 0, "nobody is told about a failure that was overtaken"


class Hanging:
    """An executor whose provider never answers (the worker is stopped while it waits)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(self, effect: OutboxEffect) -> None:
        self.started.set()
        await asyncio.sleep(3600)


async def test_a_stopping_worker_releases_the_effects_it_had_not_finished(
    database: str, clock: FakeClock
) -> None:
    await _stage(clock, "in-flight")
    hanging = Hanging()
    stopping = OutboxDispatcher(clock, {"poke": hanging, ALERT_EFFECT: _shown}, worker="box-a/41")
    stopping.start()
    await asyncio.wait_for(hanging.started.wait(), 5)
    assert (await OutboxEffect.get(idempotency_key="in-flight")).next_attempt_at > clock.now()
    await stopping.stop(grace=0.1)
    row = await OutboxEffect.get(idempotency_key="in-flight")
    assert (row.state, row.attempts, row.claimed_by) == (EffectState.PENDING, 1, "box-a/41")
    assert row.next_attempt_at <= clock.now(), "due again at once, not after the lease"
    # The restarted worker (or another one) takes it at once, at the same moment.
    executor = FlakyExecutor(failures=0)
    assert await _dispatcher(clock, executor, RetryPolicy()).run_once() == 1
    assert executor.succeeded == ["in-flight"]
    row = await OutboxEffect.get(idempotency_key="in-flight")
    assert (row.state, row.attempts) == (EffectState.DONE, 2)


async def test_a_stopping_worker_does_not_release_a_claim_taken_over_since(
    database: str, clock: FakeClock
) -> None:
    from storage.outbox import claim_due_effects

    await _stage(clock, "in-flight")
    hanging = Hanging()
    stopping = OutboxDispatcher(clock, {"poke": hanging, ALERT_EFFECT: _shown}, worker="box-a/41")
    stopping.start()
    await asyncio.wait_for(hanging.started.wait(), 5)
    clock.advance(timedelta(minutes=2, seconds=1))  # its lease ran out; another worker claims
    [newer] = await claim_due_effects(
        clock.now(), limit=10, lease=timedelta(minutes=2), worker="box-b/7"
    )
    await stopping.stop(grace=0.1)
    row = await OutboxEffect.get(idempotency_key="in-flight")
    assert (row.attempts, row.claimed_by) == (2, "box-b/7")
    assert row.next_attempt_at == newer.next_attempt_at > clock.now(), "the newer lease stands"


async def test_ops_is_alerted_after_the_configured_number_of_failed_attempts(
    database: str, clock: FakeClock
) -> None:
    from cryptography.fernet import Fernet

    from bot.app import build_runtime
    from bot.config import Settings

    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": database,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_ALERT_AFTER_ATTEMPTS": "2",
        }
    )
    executor = FlakyExecutor(failures=1000)
    runtime = build_runtime(
        settings, clock=clock, executors={"poke": executor, ALERT_EFFECT: _shown}
    )
    await _stage(clock)
    await runtime.dispatcher.run_once()
    assert await OpsAlert.all().count() == 0, "one failure is not yet worth a person's time"
    clock.advance(timedelta(minutes=1))
    await runtime.dispatcher.run_once()
    assert len(executor.calls) == 2
    alert = await OpsAlert.get()
    assert alert.kind == "effect_failing" and alert.resolved_at is None


async def test_a_retry_is_never_put_off_past_the_effects_expiry(
    database: str, clock: FakeClock
) -> None:
    expires = clock.now() + timedelta(seconds=10)
    async with in_transaction() as conn:
        await enqueue_effect(
            conn,
            kind="poke",
            payload={"expires_at": expires.isoformat()},
            idempotency_key="short-lived",
            now=clock.now(),
        )
    policy = RetryPolicy(base=timedelta(minutes=5), alert_after=50)
    executor = FlakyExecutor(failures=1000)
    dispatcher = _dispatcher(clock, executor, policy)
    assert await _pokes(dispatcher, executor) == 1
    row = await OutboxEffect.get(idempotency_key="short-lived")
    assert row.next_attempt_at == expires, "tried at its expiry at the latest, to be given up"
    clock.advance(timedelta(seconds=10))
    assert await _pokes(dispatcher, executor) == 1
