"""``keyturn gps check``: the inventory's trackers and home geofences checked with Traccar."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from bot.cli import DEMO_INVENTORY
from tests.fakes.server import running
from tests.fakes.traccar import FakeTraccar


async def keyturn(*args: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_gps_check_names_the_ids_traccar_does_not_know(tmp_path: Path) -> None:
    env = {
        "KEYTURN_DATABASE_URL": f"sqlite://{tmp_path}/k.sqlite3",
        "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    assert (await keyturn("migrate", env=env))[0] == 0
    assert (await keyturn("inventory", "apply", str(DEMO_INVENTORY), env=env))[0] == 0
    status, out = await keyturn("gps", "check", env=env)
    assert status == 1 and "GPS is off" in out
    traccar = FakeTraccar()
    for device in (101, 201):  # T2's tracker (102) is not in Traccar
        traccar.add_device(device, f"tracker {device}")
    traccar.add_geofence(1, "Harbor Yard", 43.65, -70.25)
    traccar.add_geofence(2, "Altstadt Depot", 52.52, 13.40)
    async with running(traccar.app()) as api_base:
        gps = {
            "TRACCAR_API_BASE": api_base,
            "TRACCAR_API_TOKEN": traccar.token,
            "TRACCAR_WEBHOOK_SECRET": "forward-secret",
        }
        status, out = await keyturn("gps", "check", env={**env, **gps})
        assert status == 1, out
        assert "asset T2: traccar_device_id 102" in out and "asset T1" not in out
        assert traccar.token not in out
        traccar.add_device(102, "tracker 102")
        status, out = await keyturn("gps", "check", env={**env, **gps})
        assert status == 0, out
        status, out = await keyturn("gps", "check", env={**env, **gps, "TRACCAR_API_TOKEN": "x"})
        assert status == 1 and "401" in out
