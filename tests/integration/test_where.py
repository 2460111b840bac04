"""``/where <item>`` in the ops group: owners and managers see the last position, its age and
a map link; support, maintenance and strangers are refused and see no position. Traccar is asked
outside any transaction: while it takes its time, the rest of the service goes on."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from storage.models import AuditEvent
from tests.fakes.server import running
from tests.fakes.traccar import FakeTraccar
from tests.integration.ops_harness import (
    MAINTENANCE,
    MANAGER,
    NOW,
    OWNER,
    STRANGER,
    SUPPORT,
    ops_app,
)


async def test_where_shows_owners_and_managers_the_last_position_and_nobody_else(
    tmp_path: Path, sqlite_template: Path
) -> None:
    traccar = FakeTraccar()
    traccar.add_device(101, "T1 tracker")
    traccar.add_geofence(1, "Harbor Yard", 40.70, -74.01)
    env = {"TRACCAR_API_TOKEN": traccar.token, "TRACCAR_WEBHOOK_SECRET": "s3cret-forward"}
    async with running(traccar.app()) as api_base:
        env["TRACCAR_API_BASE"] = api_base
        async with ops_app(tmp_path, sqlite_template, env=env) as ops:
            assert "not reported" in await ops.command(OWNER, "/where T1")
            # Nothing stored yet: Traccar's REST API is asked for the device's latest position.
            traccar.report(101, 40.71234, -74.00567, NOW - timedelta(minutes=12))
            answer = await ops.command(OWNER, "/where t1")
            assert "T1 Utility trailer" in answer and "12 minutes" in answer
            assert "https://www.openstreetmap.org/?mlat=40.71234&mlon=-74.00567" in answer
            # A forwarded event's position is stored, and shown from then on.
            traccar.forward_url = str(ops.client.make_url("/webhooks/traccar"))
            traccar.forward_header = ("X-Keyturn-Secret", "s3cret-forward")
            left = traccar.move(101, 1, entering=False, at=NOW - timedelta(minutes=3))
            assert await traccar.forward(left) == 200
            asked = len(traccar.requests)
            answer = await ops.command(MANAGER, "/where T1")
            assert "mlat=40.74000" in answer and "away from its yard" in answer
            assert "3 minutes" in answer and len(traccar.requests) == asked
            for who in (SUPPORT, MAINTENANCE, STRANGER):
                refused = await ops.command(who, "/where T1")
                assert "openstreetmap" not in refused and "40.7" not in refused
            assert "no GPS tracker" in await ops.command(OWNER, "/where S1")
            looked = await AuditEvent.filter(action="gps.where").values_list("actor", flat=True)
            assert sorted(looked) == sorted([f"staff:{OWNER}", f"staff:{MANAGER}"])


async def test_where_says_gps_is_off_without_traccar(tmp_path: Path, sqlite_template: Path) -> None:
    async with ops_app(tmp_path, sqlite_template) as ops:
        assert "GPS is off" in await ops.command(OWNER, "/where T1")


@pytest.fixture(params=["sqlite", "postgres"])
def postgres(request: pytest.FixtureRequest) -> str | None:
    """The migrated PostgreSQL database's URL, or None for a copy of the SQLite template."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


async def test_while_traccar_answers_where_no_transaction_is_open_and_others_are_answered(
    tmp_path: Path, sqlite_template: Path, postgres: str | None
) -> None:
    """A slow Traccar must not hold a transaction open: on SQLite that would stop every other
    write (another operator's command would wait for Traccar), on PostgreSQL it would keep a
    connection idle in its transaction, its row locks held."""
    traccar = FakeTraccar()
    traccar.add_device(101, "T1 tracker")
    traccar.report(101, 40.71234, -74.00567, NOW - timedelta(minutes=12))
    env = {"TRACCAR_API_TOKEN": traccar.token, "TRACCAR_WEBHOOK_SECRET": "s3cret-forward"}
    seen: dict[str, object] = {}
    async with running(traccar.app()) as api_base:
        env["TRACCAR_API_BASE"] = api_base
        async with ops_app(tmp_path, sqlite_template, env=env, postgres_url=postgres) as ops:

            async def meanwhile() -> None:
                try:
                    async with asyncio.timeout(5):
                        seen["other"] = await ops.command(MANAGER, "/locks")
                except TimeoutError:
                    seen["other"] = "not answered while Traccar was asked"
                if postgres is not None:
                    conn = await asyncpg.connect(postgres.replace("postgres://", "postgresql://"))
                    try:
                        seen["idle_in_transaction"] = await conn.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND state LIKE 'idle in transaction%'"
                        )
                    finally:
                        await conn.close()

            traccar.while_answering = meanwhile
            answer = await ops.command(OWNER, "/where T1")
            assert "T1 Utility trailer" in answer and "12 minutes" in answer
            assert "not answered" not in str(seen["other"]) and str(seen["other"]).strip()
            if postgres is not None:
                assert seen["idle_in_transaction"] == 0
            looked = await AuditEvent.filter(action="gps.where").values_list("actor", flat=True)
            assert looked == [f"staff:{OWNER}"]
