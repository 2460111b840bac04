"""The running app: health routes, metrics, and a renter chatting on the sandbox page."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from flows.clock import SystemClock
from flows.inventory import apply_inventory, load_inventory
from storage import db
from storage.uow import unit_of_work

METRICS_TOKEN = "kt-metrics-7f3a9c"


@pytest.fixture
def extra_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def client(
    sqlite_template: Path, tmp_path: Path, extra_env: dict[str, str]
) -> AsyncIterator[TestClient[Any, Any]]:
    path = tmp_path / "app.sqlite3"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=SystemClock().now())
    await db.close_database()
    settings = Settings.from_env(
        {
            "KEYTURN_DATABASE_URL": url,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            **extra_env,
        }
    )
    app = create_app(build_runtime(settings, sandbox=True), sandbox=True)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _replies(client: TestClient[Any, Any], address: str, count: int) -> list[dict[str, Any]]:
    """Wait until ``count`` replies have been delivered by the outbox."""
    for _ in range(100):
        response = await client.get("/sandbox/api/messages", params={"address": address})
        messages = (await response.json())["messages"]
        sent = [m for m in messages if m["direction"] == "out" and m["status"] == "sent"]
        if len(sent) >= count:
            return sent
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(sent)} of {count} replies were delivered")


async def test_health_readiness_and_metrics(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"
    await client.post("/sandbox/api/messages", json={"address": "+15550100009", "text": "hi"})
    await _replies(client, "+15550100009", 1)
    metrics = await (await client.get("/metrics")).text()
    assert "keyturn_outbox_depth 0.0" in metrics and "keyturn_timers_overdue" in metrics
    assert 'keyturn_messages_in_total{channel="sandbox",result="handled"}' in metrics
    assert 'keyturn_messages_out_total{channel="sandbox",status="sent"}' in metrics
    assert "keyturn_turn_seconds_count" in metrics


@pytest.mark.parametrize("extra_env", [{"KEYTURN_METRICS_TOKEN": METRICS_TOKEN}])
async def test_metrics_need_the_bearer_token_when_one_is_set(client: TestClient[Any, Any]) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": METRICS_TOKEN},
    ):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status == 401, headers
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert "keyturn_" not in await refused.text()
    allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert allowed.status == 200 and "keyturn_outbox_depth" in await allowed.text()
    assert (await client.get("/healthz")).status == 200, "health stays open to probes"


async def test_a_renter_chats_on_the_sandbox_page(client: TestClient[Any, Any]) -> None:
    page = await client.get("/sandbox")
    assert page.status == 200 and "Keyturn sandbox" in await page.text()
    address = "+15550100001"
    posted = await client.post("/sandbox/api/messages", json={"address": address, "text": "hi"})
    assert posted.status == 202
    [greeting] = await _replies(client, address, 1)
    assert greeting["text"].startswith("Welcome to Keyturn!")
    labels = [label for _, label in greeting["choices"]]
    assert labels == ["Altstadt Depot", "Harbor Yard"]
    await client.post("/sandbox/api/messages", json={"address": address, "text": "2"})
    replies = await _replies(client, address, 2)
    assert replies[1]["text"] == "Items at Harbor Yard:"
    assert any("/hour" in label for _, label in replies[1]["choices"])


async def test_language_change_shows_in_the_operator_feed(client: TestClient[Any, Any]) -> None:
    address = "+15550100002"
    await client.post("/sandbox/api/messages", json={"address": address, "text": "LANG fr"})
    [reply] = await _replies(client, address, 1)
    assert reply["text"] == "Désormais, je vous écrirai en français."
    feed = await (await client.get("/sandbox/api/ops")).json()
    assert [e["action"] for e in feed["audit"]][-1] == "renter.language"


async def test_a_resent_message_is_handled_once(client: TestClient[Any, Any]) -> None:
    body = {"address": "+15550100003", "text": "hi", "id": "page-1"}
    first = await client.post("/sandbox/api/messages", json=body)
    again = await client.post("/sandbox/api/messages", json=body)
    assert (await first.json())["result"] == "handled"
    assert (await again.json())["result"] == "duplicate"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ('["a list"]', 400),
        ('{"address": "call me", "text": "hi"}', 422),
        ('{"address": "+15550100001", "text": "   "}', 422),
        ('{"address": "+15550100001", "text": "' + "x" * 2000 + '"}', 422),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    client: TestClient[Any, Any], body: str, status: int
) -> None:
    response = await client.post(
        "/sandbox/api/messages", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == status
    assert (await response.text()).strip()
    listing = await client.get("/sandbox/api/messages", params={"address": "+15550100001"})
    assert (await listing.json())["messages"] == []


async def test_the_keypad_refuses_a_pin_no_code_holds(client: TestClient[Any, Any]) -> None:
    locks = (await (await client.get("/sandbox/api/locks")).json())["locks"]
    gate = next(lock for lock in locks if lock["shared"] and lock["location"] == "Harbor Yard")
    tried = await client.post("/sandbox/api/keypad", json={"lock": gate["key"], "pin": "583920"})
    assert await tried.json() == {"opens": False, "lock": gate["label"]}
    bad = await client.post("/sandbox/api/keypad", json={"lock": gate["key"], "pin": "12"})
    assert bad.status == 422
    feed = await (await client.get("/sandbox/api/ops")).json()
    assert feed["audit"][-1]["action"] == "lock.keypad_refused"
