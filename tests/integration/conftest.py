"""Fixtures for integration tests: a runtime over the demo inventory, driven by the fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from tortoise.transactions import in_transaction

from bot.app import Runtime, build_runtime
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from flows.access import ReconcileReport
from flows.inventory import apply_inventory, load_inventory
from flows.staging import run_unit, stage_outcome
from locks.simulated import SimulatedLockProvider
from storage.models import AccessCode, Asset, Booking, BookingState, Lock, Renter
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.support import rental_times

START = datetime(2026, 6, 3, 14, 0, tzinfo=UTC)  # 10:00 at Harbor Yard (New York)
END = START + timedelta(hours=4)


@pytest.fixture
async def runtime(database: str, clock: FakeClock) -> Runtime:
    settings = Settings.from_env(
        {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    )
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
    return build_runtime(settings, clock=clock)


async def booked(
    runtime: Runtime,
    asset_id: int,
    start: datetime,
    end: datetime,
    *,
    reference: str,
    phone: str,
    price_cents: int = 100,
) -> Booking:
    """A confirmed booking of ``asset_id`` by a new renter, its codes planned."""
    booking = await Booking.create(
        reference=reference,
        renter=await Renter.create(phone=phone),
        asset_id=asset_id,
        **await rental_times(asset_id, start, end),
        state=BookingState.CONFIRMED,
        currency="USD",
        price_cents=price_cents,
    )
    async with in_transaction() as conn:
        outcome = await runtime.access.plan_booking_codes(conn, booking)
        await stage_outcome(conn, outcome, runtime.clock.now())
    return booking


def simulated(runtime: Runtime) -> SimulatedLockProvider:
    provider = runtime.locks["simulated"]
    assert isinstance(provider, SimulatedLockProvider)
    return provider


async def confirmed_booking(
    runtime: Runtime, start: datetime = START, end: datetime = END
) -> Booking:
    asset = await Asset.get(code="T1")
    return await booked(
        runtime, asset.id, start, end, reference="KT1001", phone="+15550100001", price_cents=5000
    )


async def settle(runtime: Runtime) -> None:
    """Run what is due now: timers, then the effects they staged."""
    for _ in range(3):
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()


async def codes_of(booking: Booking) -> list[AccessCode]:
    return await AccessCode.filter(booking=booking).order_by("id").prefetch_related("lock")


async def keypad(runtime: Runtime, lock: Lock, pin: str, at: datetime) -> bool:
    return await simulated(runtime).try_keypad(lock.device_id, pin, at)


async def reconciled(runtime: Runtime, lock: Lock) -> ReconcileReport:
    """Reconcile ``lock`` as ``keyturn locks reconcile`` does: its record committed in one unit
    of work; a lock that cannot be listed raises, once its lost removals are queued again."""
    reconciliation = await runtime.access.reconcile(lock)
    await run_unit(reconciliation.record, runtime.clock.now())
    if reconciliation.unreachable is not None:
        raise reconciliation.unreachable
    return reconciliation.report
