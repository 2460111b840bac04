"""``/returned`` with GPS on: the manager saw the bike back, its tracker died after it was
last seen leaving. The return is confirmed, as the manager is told."""

from __future__ import annotations

from pathlib import Path

from storage.models import Booking
from tests.fakes.server import running
from tests.fakes.traccar import FakeTraccar
from tests.integration.ops_harness import MANAGER, ops_app
from tests.integration.test_returned_by_hand import a_bike_out_past_its_end


async def test_a_manager_confirms_a_return_whose_tracker_died_away_with_gps_on(
    tmp_path: Path, sqlite_template: Path
) -> None:
    traccar = FakeTraccar()
    env = {"TRACCAR_API_TOKEN": traccar.token, "TRACCAR_WEBHOOK_SECRET": "s3cret-forward"}
    async with running(traccar.app()) as api_base:
        env["TRACCAR_API_BASE"] = api_base
        async with ops_app(tmp_path, sqlite_template, env=env) as ops:
            assert ops.runtime.journey.settings.returns.gps_on
            booking = await a_bike_out_past_its_end(ops)
            answer = await ops.command(MANAGER, "/returned kout01")
            assert "Return of KOUT01 confirmed by" in answer
            await booking.refresh_from_db()
            assert booking.returned_at is not None, f"told {answer!r}, yet not returned"
            assert await Booking.filter(returned_at__isnull=False).count() == 1
