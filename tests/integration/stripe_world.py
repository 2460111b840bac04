"""An app whose payments go to the fake Stripe through its base URL, its signed webhook
reached through the app's route: shared by the payment tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import Runtime, build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from bot.payments import StripePayments
from flows.inventory import apply_inventory, load_inventory
from storage.uow import unit_of_work
from tests.conftest import FakeClock
from tests.fakes.server import running
from tests.fakes.stripe import API_KEY, WEBHOOK_SECRET, FakeStripe, WebhookDelivery
from tests.integration.conftest import settle
from tests.support import inbound

PHONE = "+15550100001"  # the renter of confirmed_booking


@dataclass
class World:
    stripe: FakeStripe
    runtime: Runtime
    client: TestClient[Any, Any]
    clock: FakeClock
    database: str

    async def say(self, text: str) -> None:
        await self.runtime.engine.handle(inbound(text, address=PHONE, at=self.clock.now()))
        await settle(self.runtime)

    async def deliver(self, delivery: WebhookDelivery) -> int:
        response = await self.client.post(
            "/webhooks/stripe", data=delivery.body, headers=delivery.headers
        )
        return response.status


@asynccontextmanager
async def stripe_world(database: str, clock: FakeClock) -> AsyncIterator[World]:
    """The app with Stripe payments against the fake, over the demo inventory."""
    fake = FakeStripe(now=clock.now)
    async with running(fake.app()) as base:
        settings = Settings.from_env(
            {
                "KEYTURN_DATABASE_URL": database,
                "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                "STRIPE_API_KEY": API_KEY,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STRIPE_API_BASE": base,
            }
        )
        async with unit_of_work() as conn:
            await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=clock.now())
        payments = StripePayments(API_KEY, api_base=base, now=clock.now)
        runtime = build_runtime(settings, clock=clock, sandbox=True, payments=payments)
        app = create_app(runtime, sandbox=True, workers=False)
        app.cleanup_ctx.clear()  # the test's `database` fixture holds the connection
        async with TestClient(TestServer(app)) as client:
            yield World(fake, runtime, client, clock, database)
        await payments.close()
