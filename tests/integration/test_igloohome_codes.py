"""A booking's code on an igloohome lock through the flows: igloohome computes codes for whole
hours, and Keyturn sets those hours itself so that a finished renter's code does not reach into
the next renter's time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime
from bot.config import Settings
from locks.igloohome import IgloohomeLockProvider
from storage.models import (
    AccessCode,
    AccessCodeState,
    Asset,
    AssetLock,
    Location,
    Lock,
    Timer,
)
from tests.conftest import FakeClock
from tests.fakes.igloohome import FakeIgloohome
from tests.fakes.server import running
from tests.integration.conftest import booked, settle

LOCK = "EB1X0a1b2c3d"
START = datetime(2026, 6, 3, 8, 0, tzinfo=UTC)  # 10:00 in Berlin
END = START + timedelta(hours=4)  # 14:00


@pytest.fixture
async def igloo(database: str, clock: FakeClock) -> AsyncIterator[tuple[FakeIgloohome, Runtime]]:
    fake = FakeIgloohome()
    async with running(fake.app()) as url:
        key = Fernet.generate_key().decode()
        settings = Settings.from_env(
            {"KEYTURN_DATABASE_URL": database, "KEYTURN_ENCRYPTION_KEY": key}
        )
        provider = IgloohomeLockProvider(
            fake.client_id, fake.client_secret, base_url=f"{url}/igloohome", timeout=2.0
        )
        runtime = build_runtime(settings, clock=clock, locks={"igloohome": provider})
        try:
            yield fake, runtime
        finally:
            fake.release()
            await provider.close()


async def test_a_code_stops_at_the_hour_the_next_renters_code_begins(
    igloo: tuple[FakeIgloohome, Runtime], clock: FakeClock
) -> None:
    fake, runtime = igloo
    clock.current = START - timedelta(days=2)
    depot = await Location.create(slug="depot", name="Depot", timezone="Europe/Berlin")
    bike = await Asset.create(code="B9", label="Cargo bike", location=depot, currency="EUR")
    lock = await Lock.create(
        key="b9",
        provider="igloohome",
        device_id=LOCK,
        label="Bike box",
        timezone="Europe/Berlin",
        location=depot,
    )
    await AssetLock.create(asset=bike, lock=lock)
    first = await booked(runtime, bike.id, START, END, reference="KIGL0", phone="+15550100001")
    await booked(
        runtime,
        bike.id,
        END + timedelta(minutes=30),
        END + timedelta(hours=3),
        reference="KIGL1",
        phone="+15550100002",
    )
    clock.current = START - timedelta(hours=24)  # programming time
    await settle(runtime)
    code = await AccessCode.get(booking=first)
    assert code.state == AccessCodeState.SET and code.offline
    # 09:45–14:15 with the buffers: from 09:00 (nobody before), to 14:00 (the next code is
    # there from 14:15, and igloohome takes whole hours).
    assert (code.starts_at, code.ends_at) == (START - timedelta(hours=1), END)
    issued = next(
        p for p in fake.algopins if p.body.get("accessName", "").startswith("Keyturn KIGL0")
    )
    assert issued.body["startDate"].startswith("2026-06-03T09:00:00")
    assert issued.body["endDate"].startswith("2026-06-03T14:00:00")
    revoke = await Timer.get(key=f"access:revoke:{code.id}")
    assert revoke.due_at == END, "the revocation moved with the window"
