"""Items' GPS positions are kept KEYTURN_GPS_RETENTION_DAYS, then purged by the retention pass
in bounded batches like the other purges."""

from __future__ import annotations

from datetime import timedelta

from cryptography.fernet import Fernet

from bot.app import build_runtime
from bot.config import Settings
from flows.retention import RETENTION_KEY, RETENTION_TIMER
from storage.models import AuditEvent, GpsPosition
from storage.timers import ensure_timer
from tests.conftest import FakeClock


async def test_positions_older_than_the_retention_are_purged(
    database: str, clock: FakeClock
) -> None:
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": database,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_GPS_RETENTION_DAYS": "7",
        }
    )
    runtime = build_runtime(settings, clock=clock)
    now = clock.now()
    for number, age in enumerate((timedelta(days=8), timedelta(days=30), timedelta(days=6))):
        await GpsPosition.create(
            device_id=101,
            position_id=number + 1,
            latitude=40.7,
            longitude=-74.0,
            fixed_at=now - age,
            received_at=now - age,
        )
    await ensure_timer(kind=RETENTION_TIMER, key=RETENTION_KEY, due_at=now, now=now)
    await runtime.timers.run_due()
    assert await GpsPosition.all().values_list("position_id", flat=True) == [3]
    audit = await AuditEvent.get(action="retention.purged")
    assert audit.details["gps_positions"] == 2
