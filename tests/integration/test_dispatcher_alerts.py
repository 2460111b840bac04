"""Alerts the dispatcher raises commit with what they are about: a failing effect's alert with the
mark that it was raised, a message that cannot be delivered with its record."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime
from bot.config import Settings
from storage.db import connection
from storage.journal import ALERT_EFFECT
from storage.models import OpsAlert, OutboxEffect
from storage.outbox import enqueue_effect
from tests.conftest import FakeClock


class Failing:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, effect: OutboxEffect) -> None:
        self.calls += 1
        raise ConnectionError("provider answered 503")


async def _shown(effect: OutboxEffect) -> None:
    """Nobody is shown the alerts here."""


@contextlib.asynccontextmanager
async def _alerts_table_away() -> AsyncIterator[None]:
    """The database refuses alerts for a while (a lost connection, a full disk)."""
    await connection().execute_script("ALTER TABLE ops_alert RENAME TO ops_alert_away")
    try:
        yield
    finally:
        await connection().execute_script("ALTER TABLE ops_alert_away RENAME TO ops_alert")


@pytest.fixture
def failing() -> Failing:
    return Failing()


@pytest.fixture
def runtime(database: str, clock: FakeClock, failing: Failing) -> Runtime:
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": database,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_ALERT_AFTER_ATTEMPTS": "2",
        }
    )
    return build_runtime(settings, clock=clock, executors={"poke": failing, ALERT_EFFECT: _shown})


async def test_a_failing_effects_alert_is_not_lost_when_raising_it_fails(
    runtime: Runtime, clock: FakeClock, failing: Failing
) -> None:
    async with in_transaction() as conn:
        await enqueue_effect(conn, kind="poke", payload={}, idempotency_key="e1", now=clock.now())
    await runtime.dispatcher.run_once()
    clock.advance(timedelta(minutes=1))
    async with _alerts_table_away():
        with contextlib.suppress(Exception):
            await runtime.dispatcher.run_once()  # the second failure alerts; the alert fails
    assert failing.calls == 2
    clock.advance(timedelta(minutes=3))  # the unrecorded attempt's lease runs out
    await runtime.dispatcher.run_once()
    assert failing.calls == 3
    alert = await OpsAlert.get()
    assert alert.kind == "effect_failing" and alert.resolved_at is None
