"""The time-lapse demo through the sandbox's HTTP API only: a whole rental played by moving the
demo's clock (book, pay, ID, the PIN, the keypad inside and outside its window, the end, the
code revoked, the deposit released), and what the clock endpoint accepts and refuses.

The app runs as `keyturn demo` runs it: its own database connection and its background workers
(the dispatcher and the timer runner) on a demo clock, paused here so that only the test moves it.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.fernet import Fernet

from bot.app import build_runtime, create_app
from bot.cli import DEMO_INVENTORY
from bot.config import Settings
from flows.clock import DemoClock, SystemClock
from flows.inventory import apply_inventory, load_inventory
from storage import db
from storage.uow import unit_of_work

ADDRESS = "+15550100001"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
NOW = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # Monday 12:00 in New York

Client = TestClient[Any, Any]


async def _demo_database(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "demo.sqlite3"
    shutil.copy(sqlite_template, path)
    url = f"sqlite://{path}"
    await db.open_database(url)
    async with unit_of_work() as conn:
        await apply_inventory(conn, load_inventory(DEMO_INVENTORY), now=NOW)
    await db.close_database()
    return url


def _settings(url: str) -> Settings:
    return Settings.from_env(
        {"KEYTURN_DATABASE_URL": url, "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    )


@pytest.fixture
async def demo(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Client]:
    url = await _demo_database(sqlite_template, tmp_path)
    clock = DemoClock(NOW, speed=60, paused=True)
    runtime = build_runtime(_settings(url), clock=clock, sandbox=True)
    async with TestClient(TestServer(create_app(runtime, sandbox=True))) as client:
        yield client


async def clock_of(client: Client) -> dict[str, Any]:
    response = await client.get("/sandbox/api/clock")
    assert response.status == 200
    state: dict[str, Any] = await response.json()
    return state


async def move(client: Client, change: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/sandbox/api/clock", json=change)
    assert response.status == 200, await response.text()
    state: dict[str, Any] = await response.json()
    return state


def at(state: dict[str, Any], key: str = "now") -> datetime:
    return datetime.fromisoformat(state[key])


class Renter:
    def __init__(self, client: Client, address: str = ADDRESS) -> None:
        self.client, self.address = client, address
        self.seen = 0

    async def say(self, text: str = "", image: str | None = None) -> list[str]:
        body = {"address": self.address, "text": text}
        if image:
            body["image"] = f"data:image/png;base64,{image}"
        response = await self.client.post("/sandbox/api/messages", json=body)
        assert response.status == 202, await response.text()
        return await self.inbox()

    async def inbox(self) -> list[str]:
        """What reached the renter since last asked, once everything due has run (a move of
        the clock to where it is answers when it has)."""
        await move(self.client, {"advance_to": (await clock_of(self.client))["now"]})
        listing = await self.client.get("/sandbox/api/messages", params={"address": self.address})
        out = [m for m in (await listing.json())["messages"] if m["direction"] == "out"]
        new = [m["text"] for m in out[self.seen :] if m["status"] == "sent"]
        self.seen += len(new)
        return new


async def keypad(client: Client, lock: str, pin: str) -> bool:
    response = await client.post("/sandbox/api/keypad", json={"lock": lock, "pin": pin})
    assert response.status == 200, await response.text()
    opens: bool = (await response.json())["opens"]
    return opens


async def audit_actions(client: Client) -> list[str]:
    feed = await (await client.get("/sandbox/api/ops")).json()
    return [event["action"] for event in feed["audit"]]


async def next_until(client: Client, renter: Renter, pattern: str, limit: int = 40) -> str:
    """Jump from event to event until the renter gets a message matching ``pattern``."""
    for _ in range(limit):
        state = await move(client, {"advance_to": "next"})
        for text in await renter.inbox():
            if re.search(pattern, text, re.S):
                return text
    raise AssertionError(f"no message matching {pattern!r}; the clock is at {state['now']}")


async def test_a_whole_rental_plays_out_by_moving_the_demo_clock(demo: Client) -> None:
    renter = Renter(demo)
    start = await clock_of(demo)
    assert set(start) == {"now", "speed", "paused", "next_due"}
    assert (start["now"], start["speed"], start["paused"]) == ("2026-06-01T16:00:00Z", 60, True)
    [quote] = await renter.say("BOOK T1 tomorrow 10am to 2pm")
    assert "Reply YES" in quote
    holding, link = await renter.say("YES")
    assert "holding T1" in holding
    session = re.search(r"/sandbox/pay/(\S+)", link)
    assert session is not None
    paid = await demo.post(f"/sandbox/pay/{session.group(1)}", allow_redirects=False)
    assert paid.status == 303
    [ask_id] = await renter.inbox()
    assert "photo of your ID" in ask_id
    [thanks] = await renter.say(image=PNG)
    assert "checking your ID" in thanks
    [check] = (await (await demo.get("/sandbox/api/identity")).json())["checks"]
    decided = await demo.post(
        f"/sandbox/api/identity/{check['id']}/decision", json={"approve": True}
    )
    assert decided.status == 200
    [confirmed] = await renter.inbox()
    assert "is confirmed" in confirmed

    # Tuesday 10:00-14:00 in New York, 15 minutes' buffer each side: the window opens 13:45 UTC
    # and the PIN is sent an hour before it.
    pin_message = await next_until(demo, renter, r"Trailer Bay 1: \d{6}")
    state = await clock_of(demo)
    assert at(state) == datetime(2026, 6, 2, 12, 45, tzinfo=UTC), "the PIN's own timer"
    [pin] = set(re.findall(r": (\d{6})", pin_message))
    assert not await keypad(demo, "harbor-t1", pin), "before its window the keypad refuses it"

    inside = await move(demo, {"advance_to": "2026-06-02T10:05:00-04:00"})
    assert at(inside) == datetime(2026, 6, 2, 14, 5, tzinfo=UTC)
    assert await keypad(demo, "harbor-t1", pin), "inside its window the keypad opens"
    assert not await keypad(demo, "harbor-t1", "0" + pin[1:] if pin[0] != "0" else "1" + pin[1:])

    thank_you = await next_until(demo, renter, r"Thank you")
    assert at(await clock_of(demo)) == datetime(2026, 6, 2, 18, 0, tzinfo=UTC), "at its end"
    assert "deposit is released once the return has been checked" in thank_you
    assert "booking.completed" in await audit_actions(demo)

    # The window closes with the buffer after the end; the code is taken off the lock.
    await move(demo, {"advance_to": "2026-06-02T18:16:00Z"})
    actions = await audit_actions(demo)
    assert "access.window_ended" in actions and "access.removed" in actions, actions
    assert not await keypad(demo, "harbor-t1", pin), "after its window the code is revoked"
    actions = await audit_actions(demo)
    assert actions.count("lock.keypad_opened") == 1 and actions.count("lock.keypad_refused") == 3

    # The deposit waits for the return, not the clock: RETURN and DONE, then the damage review
    # (12 hours) passes on the demo's clock and the hold is released, with the receipt.
    # Past the end and its 15 minutes' grace with no return: the renter is asked for it.
    [asked] = await renter.inbox()
    assert "Please bring it back to Harbor Yard and reply RETURN" in asked
    _, lock_it = await renter.say("RETURN")
    assert "reply DONE" in lock_it
    noted, confirmed_return = await renter.say("DONE")
    assert "noted: late" in noted and "confirmed" in confirmed_return
    receipt = await next_until(demo, renter, r"Receipt for booking")
    assert at(await clock_of(demo)) == datetime(2026, 6, 3, 6, 16, tzinfo=UTC), "review over"
    assert "Deposit of $100.00: released" in receipt


async def test_the_clock_changes_speed_pauses_and_says_what_is_next(demo: Client) -> None:
    renter = Renter(demo)
    await renter.say("BOOK T1 tomorrow 10am to 2pm")
    await renter.say("YES")
    state = await clock_of(demo)
    hold_ends = NOW + timedelta(minutes=30)
    assert at(state, "next_due") <= hold_ends
    running = await move(demo, {"speed": 3600, "paused": False})
    assert running["speed"] == 3600 and running["paused"] is False
    paused = await move(demo, {"paused": True})
    assert paused["paused"] is True and at(paused) >= at(state)
    frozen = await clock_of(demo)
    assert frozen["now"] == paused["now"], "a paused clock stands still"
    # Jump from event to event until the unpaid hold has expired.
    for _ in range(10):
        await move(demo, {"advance_to": "next"})
        expired = [t for t in await renter.inbox() if "was not paid in time" in t]
        if expired:
            break
    assert expired, "the unpaid hold expired on the demo's clock"
    assert at(await clock_of(demo)) >= hold_ends


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"speed": 0}, "speed must be a whole number from 1 to 3600"),
        ({"speed": 3601}, "speed must be a whole number from 1 to 3600"),
        ({"speed": "600"}, "speed must be a whole number from 1 to 3600"),
        ({"speed": True}, "speed must be a whole number from 1 to 3600"),
        ({"paused": "yes"}, "paused must be true or false"),
        ({"advance_to": "tomorrow"}, "is not an ISO-8601 time"),
        ({"advance_to": "2026-06-02T09:00:00"}, "must say its offset"),
        ({"advance_to": "2026-06-01T15:59:59Z"}, "only moves forward"),
        ({"advance_to": 12}, "advance_to must be an ISO-8601 time"),
        ({"advance_to": "9999-12-31T23:59:59Z"}, "at most ten years ahead"),
        ({"rewind": True}, "unknown field 'rewind'"),
        ({}, "say what to change"),
        ({"speed": 10, "advance_to": "2026-05-01T00:00:00Z"}, "only moves forward"),
        ([1], "the body must be a JSON object"),
    ],
)
async def test_a_bad_clock_change_is_refused_and_changes_nothing(
    demo: Client, body: Any, error: str
) -> None:
    before = await clock_of(demo)
    response = await demo.post("/sandbox/api/clock", json=body)
    assert response.status == 400
    assert error in (await response.json())["error"]
    assert await clock_of(demo) == before
    not_json = await demo.post("/sandbox/api/clock", data=b"{speed")
    assert not_json.status == 400 and "JSON" in (await not_json.json())["error"]


async def test_serve_sandbox_shows_the_real_clock_and_refuses_to_move_it(
    sqlite_template: Path, tmp_path: Path
) -> None:
    url = await _demo_database(sqlite_template, tmp_path)
    runtime = build_runtime(_settings(url), clock=SystemClock(), sandbox=True)
    async with TestClient(TestServer(create_app(runtime, sandbox=True))) as client:
        before = datetime.now(UTC)
        state = await clock_of(client)
        assert state["speed"] == 1 and state["paused"] is False
        assert before <= at(state) <= datetime.now(UTC)
        refused = await client.post("/sandbox/api/clock", json={"speed": 600})
        assert refused.status == 403
        assert "only `keyturn demo`" in (await refused.json())["error"]
        again = await client.post("/sandbox/api/clock", json={"advance_to": "next"})
        assert again.status == 403
        assert (await clock_of(client))["speed"] == 1
