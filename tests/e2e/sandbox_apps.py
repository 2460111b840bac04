"""Sandbox apps over the test's database, built with the settings and inventory a test needs,
and a renter's turn on the sandbox page's HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.gps.simulated import simulated_gps
from flows.inventory import apply_inventory, load_inventory
from storage.uow import unit_of_work
from tests.conftest import FakeClock

NOW = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # Monday 12:00 in New York
ADDRESS = "+15550100001"

App = tuple[TestClient[Any, Any], Runtime]
MakeApp = Callable[..., Awaitable[App]]


@asynccontextmanager
async def sandbox_apps(database: str, tmp_path: Path) -> AsyncIterator[MakeApp]:
    """``make(env, horizon=, leads=, take_payments=)``: the demo inventory (Harbor Yard's
    horizon replaced, and ``leads``, TOML lines, added to it when given) and an app on the
    sandbox, served until the context ends."""
    clients: list[TestClient[Any, Any]] = []

    async def make(
        env: dict[str, str] | None = None,
        *,
        horizon: int | None = None,
        leads: str = "",
        take_payments: bool = True,
        gps: bool = False,
    ) -> App:
        clock = FakeClock(NOW)
        inventory = DEMO_INVENTORY.read_text()
        if horizon is not None:
            inventory = inventory.replace(
                "booking_horizon_days = 365", f"booking_horizon_days = {horizon}"
            )
        harbor_zone = 'timezone = "America/New_York"\n'
        inventory = inventory.replace(harbor_zone, harbor_zone + leads, 1)
        path = tmp_path / "inventory.toml"
        path.write_text(inventory)
        async with unit_of_work() as conn:
            await apply_inventory(conn, load_inventory(path), now=clock.now())
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": database,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                **(env or {}),
            }
        )
        runtime = build_runtime(
            settings,
            clock=clock,
            sandbox=True,
            take_payments=take_payments,
            gps=simulated_gps() if gps else None,  # the demo's simulated Traccar
        )
        app = create_app(runtime, sandbox=True, workers=False)
        app.cleanup_ctx.clear()  # the `database` fixture holds the connection
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client, runtime

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


async def say(
    app: App, text: str, address: str = ADDRESS, *, image: str | None = None
) -> list[str]:
    """Send as a renter on the sandbox page (text, or a base64 PNG); the replies and notices
    that followed."""
    client, runtime = app
    before = len(await _sent(client, address))
    body = {"address": address, "text": text}
    if image is not None:
        body["image"] = f"data:image/png;base64,{image}"
    response = await client.post("/sandbox/api/messages", json=body)
    assert response.status == 202, await response.text()
    for _ in range(3):
        await runtime.timers.run_due()
        await runtime.dispatcher.run_once()
    return (await _sent(client, address))[before:]


async def _sent(client: TestClient[Any, Any], address: str) -> list[str]:
    listing = await client.get("/sandbox/api/messages", params={"address": address})
    return [m["text"] for m in (await listing.json())["messages"] if m["direction"] == "out"]
