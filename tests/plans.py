"""The plans PostgreSQL makes for the statements Keyturn runs: for tests that guard an index.

The statements are captured as Keyturn sends them to the driver, with their parameters, then
explained on a connection of their own with sequential scans priced out (``enable_seqscan =
off``): where an index can serve a statement the planner takes it however few rows the test
seeded, and where none can, the plan still says ``Seq Scan`` — the scan a table with years of
rows would pay for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.conftest import asyncpg_url

#: The tables that grow with the business: a scan of any of them is a defect.
LARGE_TABLES = (
    "access_code",
    "audit_event",
    "booking",
    "conversation",
    "extension",
    "identity_check",
    "message",
    "outbox_effect",
    "payment",
    "processed_webhook",
    "renter",
    "simulated_code",
    "simulated_unlock",
    "timer",
)
_EXPLAINED = ("SELECT", "UPDATE", "DELETE", "WITH")
_DRIVER_CALLS = ("fetch", "fetchrow", "fetchval", "execute")


@dataclass
class Statement:
    sql: str
    params: list[object]


@dataclass
class Plan:
    sql: str
    text: str

    def scans(self) -> list[str]:
        """The large tables this plan reads from end to end."""
        found = re.findall(r"Seq Scan on (\w+)", self.text)
        return [table for table in found if table in LARGE_TABLES]


@dataclass
class Captured:
    statements: list[Statement] = field(default_factory=list)

    def touching(self, table: str) -> list[Statement]:
        named = re.compile(rf'(?:FROM|JOIN|UPDATE|INTO)\s+"?{table}"?(?:\s|$)', re.IGNORECASE)
        return [s for s in self.statements if named.search(s.sql)]


@contextmanager
def captured() -> Iterator[Captured]:
    """The statements Keyturn runs on PostgreSQL inside the block, with their parameters, as
    they reach the driver (the log's records carry no parameters: they are redacted)."""
    into = Captured()
    originals = {name: getattr(asyncpg.Connection, name) for name in _DRIVER_CALLS}

    def recording(name: str) -> Any:
        original = originals[name]

        async def call(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            if query.lstrip().upper().startswith(_EXPLAINED):
                into.statements.append(Statement(query, list(args)))
            return await original(self, query, *args, **kwargs)

        return call

    for name in _DRIVER_CALLS:
        setattr(asyncpg.Connection, name, recording(name))
    try:
        yield into
    finally:
        for name, original in originals.items():
            setattr(asyncpg.Connection, name, original)


async def explain(url: str, statements: list[Statement]) -> list[Plan]:
    """Each statement's plan, sequential scans priced out; nothing is executed."""
    conn = await asyncpg.connect(asyncpg_url(url))
    try:
        await conn.execute("SET enable_seqscan = off")
        plans = []
        for statement in statements:
            rows = await conn.fetch("EXPLAIN " + statement.sql, *statement.params)
            plans.append(Plan(statement.sql, "\n".join(row[0] for row in rows)))
        return plans
    finally:
        await conn.close()


def scanning(plans: list[Plan]) -> list[str]:
    """What a reader needs to see of the plans that scan a large table."""
    return [f"{plan.sql}\n{plan.text}" for plan in plans if plan.scans()]


_INDEX_SCAN = re.compile(
    r"Index (?:Only )?Scan (?:Backward )?using (\w+)|Bitmap Index Scan on (\w+)"
)


def indexes_used(plans: list[Plan]) -> set[str]:
    """The names of the indexes the plans read."""
    return {scan or bitmap for plan in plans for scan, bitmap in _INDEX_SCAN.findall(plan.text)}
