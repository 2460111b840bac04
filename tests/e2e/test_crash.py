"""Workers killed with SIGKILL in the middle of journeys, on PostgreSQL.

``keyturn serve --sandbox`` runs as real processes on a database of its own. Renters book, pay,
send an ID and get confirmed through the sandbox API while workers are killed right after their
turns are stored, with replies, code programming and payments still in the outbox. A restarted
worker (or the surviving one of two) finishes the work: every booking reaches its state, every
code due is set and every cancelled one removed, each reply is stored and sent once, and nothing
is left pending.

A claimed effect stays leased to the dead worker for the dispatcher's lease (two minutes); the
test ends the dead worker's leases in the database instead of waiting them out, as the passing of
time would. The leases of a worker still alive are left alone: ending those would run its
effects twice at once, which time does not do (an effect times out well inside its lease).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from cryptography.fernet import Fernet

from bot.cli import DEMO_INVENTORY
from tests.conftest import asyncpg_url, scratch_postgres

pytestmark = pytest.mark.postgres

WAIT = 20.0  # seconds: the bound on every wait for a worker
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
HARBOR = ZoneInfo("America/New_York")
T = TypeVar("T")


@pytest.fixture
def database_url() -> Iterator[str]:
    with scratch_postgres(f"keyturn_crash_{os.getpid()}") as url:
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """The ``keyturn`` processes of one test, all on one database."""

    database_url: str
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    #: How each killed worker signed its claims ("host/pid").
    killed: list[str] = field(default_factory=list)
    #: Effects still pending each time a worker was killed, to show the kills came mid-work.
    pending_at_kills: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "KEYTURN_DATABASE_URL": self.database_url,
            "KEYTURN_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "KEYTURN_LOG_LEVEL": "WARNING",
        }

    def keyturn(self, *args: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "bot", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    async def start(self) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (self.logs / f"worker-{port}.log").open("wb") as log:
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "serve",
                "--sandbox",
                "--port",
                str(port),
                env={**self.env, "KEYTURN_PUBLIC_URL": base},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers[base] = worker
        deadline = time.monotonic() + WAIT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert worker.returncode is None, f"worker exited: {self.log_of(port)}"
                try:
                    async with session.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            return base
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"worker on {port} not ready within {WAIT} s")

    def log_of(self, port: int) -> str:
        return (self.logs / f"worker-{port}.log").read_text(errors="replace")[-3000:]

    async def kill(self, base: str) -> None:
        worker = self.workers.pop(base)
        worker.send_signal(signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), WAIT)
        self.killed.append(f"{socket.gethostname()}/{worker.pid}")
        [row] = await query(
            self.database_url, "SELECT count(*) AS n FROM outbox_effect WHERE state = 'pending'"
        )
        self.pending_at_kills.append(int(row["n"]))

    async def stop_all(self) -> None:
        for base in list(self.workers):
            await self.kill(base)


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(database_url, tmp_path)
    cluster.keyturn("migrate")
    cluster.keyturn("inventory", "apply", str(DEMO_INVENTORY))
    try:
        yield cluster
    finally:
        await cluster.stop_all()


async def eventually(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = await check()
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {WAIT} s: {what}")


async def end_leases(database_url: str, worker: str) -> None:
    """What two minutes would do: the dead ``worker``'s claims on effects and timers lapse."""
    conn = await asyncpg.connect(asyncpg_url(database_url))
    try:
        await conn.execute(
            "UPDATE outbox_effect SET next_attempt_at = now() WHERE state = 'pending'"
            " AND next_attempt_at > now() AND claimed_by = $1",
            worker,
        )
        await conn.execute(
            "UPDATE timer SET claimed_until = NULL WHERE state = 'pending' AND claimed_by = $1",
            worker,
        )
    finally:
        await conn.close()


async def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_url(database_url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def when_soon() -> str:
    """A four-hour slot starting in about two hours, Harbor Yard time: its codes are due now."""
    now = datetime.now(HARBOR)
    start = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    day = "today" if start.date() == now.date() else "tomorrow"
    return f"{day} {start.hour}:00-{(start.hour + 4) % 24}:00"


class Renter:
    """A renter on the sandbox page; each message carries its own id, kept for retries."""

    def __init__(self, session: aiohttp.ClientSession, phone: str, asset: str) -> None:
        self.session = session
        self.phone = phone
        self.asset = asset
        self.sent = 0

    async def say(self, base: str, text: str = "", image: str | None = None) -> None:
        self.sent += 1
        body: dict[str, str] = {
            "address": self.phone,
            "text": text,
            "id": f"{self.phone}-{self.sent}",
        }
        if image:
            body["image"] = image
        async with self.session.post(f"{base}/sandbox/api/messages", json=body) as response:
            assert response.status == 202, await response.text()

    async def retry(self, base: str, text: str = "", image: str | None = None) -> None:
        """The page sends the last message again (same id) after the worker vanished."""
        self.sent -= 1
        await self.say(base, text, image)

    async def replies(self, base: str) -> list[dict[str, Any]]:
        params = {"address": self.phone}
        async with self.session.get(f"{base}/sandbox/api/messages", params=params) as response:
            assert response.status == 200
            messages = (await response.json())["messages"]
        return [m for m in messages if m["direction"] == "out"]

    async def wait_for(self, base: str, fragment: str) -> str:
        async def sent_reply() -> str | None:
            found = [m for m in await self.replies(base) if fragment in (m["text"] or "")]
            return found[0]["text"] if found and found[0]["status"] == "sent" else None

        text: str = await eventually(sent_reply, f"{self.phone} hears {fragment!r}")
        return text


async def pay(session: aiohttp.ClientSession, base: str, link: str) -> None:
    match = re.search(r"/sandbox/pay/(\S+)", link)
    assert match, link
    async with session.post(f"{base}/sandbox/pay/{match.group(1)}", allow_redirects=False) as r:
        assert r.status == 303


async def approve_ids(session: aiohttp.ClientSession, base: str, count: int) -> None:
    async def pending() -> list[dict[str, Any]] | None:
        async with session.get(f"{base}/sandbox/api/identity") as response:
            checks: list[dict[str, Any]] = (await response.json())["checks"]
        return checks if len(checks) == count else None

    checks = await eventually(pending, f"{count} IDs to review")
    decisions = [
        session.post(f"{base}/sandbox/api/identity/{c['id']}/decision", json={"approve": True})
        for c in checks
    ]
    for response in await asyncio.gather(*decisions):
        assert response.status == 200
        response.release()


async def all_settled(database_url: str) -> None:
    async def nothing_pending() -> bool | None:
        [row] = await query(
            database_url,
            "SELECT (SELECT count(*) FROM outbox_effect WHERE state = 'pending') AS effects,"
            " (SELECT count(*) FROM timer WHERE state = 'pending' AND due_at <= now()) AS timers,"
            " (SELECT count(*) FROM message WHERE direction = 'out' AND status <> 'sent') AS out",
        )
        return True if (row["effects"], row["timers"], row["out"]) == (0, 0, 0) else None

    await eventually(nothing_pending, "no effect, due timer or unsent reply left")
    dead = await query(
        database_url, "SELECT kind, last_error FROM outbox_effect WHERE state='dead'"
    )
    assert dead == [], dead


async def no_reply_twice(database_url: str) -> None:
    rows = await query(
        database_url,
        "SELECT c.address, m.body, count(*) AS n FROM message m"
        " JOIN conversation c ON c.id = m.conversation_id WHERE m.direction = 'out'"
        " GROUP BY c.address, m.body HAVING count(*) > 1",
    )
    assert rows == [], [dict(r) for r in rows]
    inbound = await query(
        database_url,
        "SELECT provider_id, count(*) AS n FROM message WHERE direction = 'in'"
        " GROUP BY provider_id HAVING count(*) > 1",
    )
    assert inbound == [], "a retried message was taken twice"


async def crash_through_journeys(cluster: Cluster, bases: list[str], survivor: bool) -> None:
    """Three renters from booking to confirmation, then one cancels; after each burst of turns
    the first worker is killed at once. ``survivor``: a second worker carries on alone."""
    url = cluster.database_url
    async with aiohttp.ClientSession() as session:
        renters = [
            Renter(session, "+15550300001", "T1"),
            Renter(session, "+15550300002", "T2"),
            Renter(session, "+15550300003", "S1"),
        ]
        slot = when_soon()

        def base_for(index: int) -> str:
            return bases[index % len(bases)]

        # Quotes, then YES from all at once; the worker dies with the holds and links pending.
        await asyncio.gather(
            *(r.say(base_for(i), f"BOOK {r.asset} {slot}") for i, r in enumerate(renters))
        )
        for i, r in enumerate(renters):
            await r.wait_for(base_for(i), "Reply YES")
        await asyncio.gather(*(r.say(base_for(i), "YES") for i, r in enumerate(renters)))
        bases = await replace_first(cluster, bases, survivor)
        # One renter's page did not hear back and sends YES again: the same message id.
        await renters[0].retry(bases[0], "YES")
        links = [await r.wait_for(base_for(i), "Pay ") for i, r in enumerate(renters)]

        # Pay, send the ID; the reviews are decided at once and the worker dies again.
        for i, (r, link) in enumerate(zip(renters, links, strict=True)):
            await pay(session, base_for(i), link)
            await r.wait_for(base_for(i), "photo of your ID")
            await r.say(base_for(i), image=PNG)
            await r.wait_for(base_for(i), "checking your ID")
        await approve_ids(session, bases[0], len(renters))
        bases = await replace_first(cluster, bases, survivor)
        for i, r in enumerate(renters):
            await r.wait_for(base_for(i), "is confirmed")

        # The first renter cancels; the worker dies with the codes' removal pending.
        await renters[0].say(bases[0], "CANCEL")
        await renters[0].wait_for(bases[0], "You get")
        await renters[0].say(bases[0], "YES")
        bases = await replace_first(cluster, bases, survivor)
        await renters[0].wait_for(bases[0], "is cancelled")

    assert any(cluster.pending_at_kills), "the kills came while there was work in the outbox"
    await all_settled(url)
    await no_reply_twice(url)
    bookings = {
        r["phone"]: r["state"]
        for r in await query(
            url,
            # A sandbox renter is known by its conversation's address, not by a phone number.
            "SELECT conversation.address AS phone, booking.state FROM booking"
            " JOIN conversation ON conversation.renter_id = booking.renter_id",
        )
    }
    assert bookings == {
        "+15550300001": "cancelled",
        "+15550300002": "confirmed",
        "+15550300003": "confirmed",
    }
    codes = await query(
        url,
        "SELECT conversation.address AS phone, access_code.state, access_code.provider_ref"
        " FROM access_code JOIN booking ON booking.id = access_code.booking_id"
        " JOIN conversation ON conversation.renter_id = booking.renter_id",
    )
    states = {(c["phone"], c["state"]) for c in codes}
    assert states == {
        ("+15550300001", "removed"),
        ("+15550300002", "set"),
        ("+15550300003", "set"),
    }, states
    assert len(codes) == 6, "two locks (the item and the gate) per booking, each planned once"
    on_locks = await query(
        url,
        "SELECT device_id, count(*) AS n FROM simulated_code WHERE removed_at IS NULL"
        " GROUP BY device_id",
    )
    assert sum(row["n"] for row in on_locks) == 4, "the live bookings' codes, once each"


async def replace_first(cluster: Cluster, bases: list[str], survivor: bool) -> list[str]:
    """Kill the first worker at once. Alone, it is started again; with a survivor, the survivor
    carries on (and the first is not restarted again)."""
    await cluster.kill(bases[0])
    await end_leases(cluster.database_url, cluster.killed[-1])
    if survivor and len(bases) > 1:
        return bases[1:]
    return [await cluster.start(), *bases[1:]]


async def test_a_worker_killed_mid_journeys_and_restarted_loses_nothing(cluster: Cluster) -> None:
    await crash_through_journeys(cluster, [await cluster.start()], survivor=False)


async def test_one_of_two_workers_killed_for_good_loses_nothing(cluster: Cluster) -> None:
    bases = [await cluster.start(), await cluster.start()]
    await crash_through_journeys(cluster, bases, survivor=True)
