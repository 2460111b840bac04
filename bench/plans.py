"""Which statements of a measure read a large table from end to end, and their plans.

Statements are captured from Tortoise's ``tortoise.db_client`` logger at DEBUG (as
``tests/integration/test_statement_budget.py`` counts them), with their parameters. On
PostgreSQL the tables' ``seq_scan`` counters (``pg_stat_user_tables``) are compared before and
after the measure; for each large table scanned, the captured statements naming it are
``EXPLAIN``-ed and those whose plan has ``Seq Scan on`` it are shown. On SQLite every captured
statement's ``EXPLAIN QUERY PLAN`` is read and those that ``SCAN`` a large table without an
index are shown. Statements run by another process (a ``keyturn serve`` worker) are not
captured: for them only the counters say a scan happened.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from storage import db

#: A table is large from this many rows on: scanning it is what the bench looks for.
LARGE_TABLE_ROWS = 10_000
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")
#: PostgreSQL reports a backend's table counters at most once a second.
STATS_DELAY = 1.1
SHOWN_PER_MEASURE = 3


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: dict[str, list[Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        statement = _statement(record)
        if statement is None:
            return
        query, values = statement
        if not query.lstrip().upper().startswith(TRANSACTION_CONTROL):
            self.seen.setdefault(query, values)


#: What the parameters' reprs name (Tortoise logs ``"%s: %s", query, values``).
_REPR_NAMES = {"datetime": datetime, "Decimal": Decimal, "UUID": UUID}


def _statement(record: logging.LogRecord) -> tuple[str, list[Any]] | None:
    """The statement and its values. Keyturn's log redaction formats each record as it is made
    (``bot/log_redaction.py``), so the values are read back from their repr."""
    args = record.args
    values: object
    if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str):
        query, values = args[0], args[1]
    else:
        message = str(record.msg)
        cut = message.find(": [")
        if message.endswith(": None"):
            return message.removesuffix(": None"), []
        if cut < 0:
            return None
        query = message[:cut]
        try:
            # The bench's own statements' parameters, as Tortoise logged them.
            values = eval(message[cut + 2 :], {"__builtins__": {}}, _REPR_NAMES)  # noqa: S307
        except Exception:
            return None
    if values is None:
        return query, []
    if isinstance(values, (list, tuple)) and not (values and isinstance(values[0], list)):
        return query, list(values)
    return None  # executemany: many rows of values


@contextmanager
def captured() -> Iterator[dict[str, list[Any]]]:
    """The distinct statements this process runs in the block, each with one set of values."""
    logger = logging.getLogger("tortoise.db_client")
    recorder = _Recorder()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(recorder)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield recorder.seen
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
        logger.propagate = propagate


@dataclass
class Scans:
    """What one measure scanned: per large table, sequential scans and rows they read."""

    tables: dict[str, tuple[int, int]] = field(default_factory=dict)
    plans: list[str] = field(default_factory=list)
    #: True where ``tables`` are PostgreSQL's counters; on SQLite they count the statements
    #: whose plan scans the table.
    counted: bool = True

    def summary(self) -> str:
        if not self.tables:
            return "no sequential scan counted; plans of its statements:"
        if not self.counted:
            return "; ".join(
                f"{name}: scanned by {statements} of its statements"
                for name, (statements, _) in sorted(self.tables.items())
            )
        return "; ".join(
            f"{name}: {scans} seq scans, {rows:,} rows read"
            for name, (scans, rows) in sorted(self.tables.items())
        )


class ScanWatch:
    """Counts sequential scans of large tables around a measure (PostgreSQL) and explains the
    statements behind them (both databases)."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.postgres = database_url.startswith("postgres")
        self.sizes: dict[str, int] = {}

    async def sizes_now(self) -> None:
        if self.postgres:
            rows = await self._pg("SELECT relname, n_live_tup FROM pg_stat_user_tables")
            self.sizes = {row["relname"]: int(row["n_live_tup"]) for row in rows}
            return
        conn = db.connection()
        _, tables = await conn.execute_query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        for row in tables:
            name = row["name"]
            _, counted = await conn.execute_query(f'SELECT count(*) AS n FROM "{name}"')  # noqa: S608
            self.sizes[name] = int(counted[0]["n"])

    def large(self) -> set[str]:
        return {name for name, rows in self.sizes.items() if rows >= LARGE_TABLE_ROWS}

    async def _pg(self, query: str) -> list[asyncpg.Record]:
        dsn = self.url.split("?", 1)[0]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            rows: list[asyncpg.Record] = await conn.fetch(query)
            return rows
        finally:
            await conn.close()

    async def counters(self) -> dict[str, tuple[int, int]]:
        if not self.postgres:
            return {}
        await asyncio.sleep(STATS_DELAY)
        rows = await self._pg("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables")
        return {r["relname"]: (int(r["seq_scan"] or 0), int(r["seq_tup_read"] or 0)) for r in rows}

    async def compare(
        self,
        before: dict[str, tuple[int, int]],
        statements: dict[str, list[Any]],
    ) -> Scans:
        scans = Scans()
        large = self.large()
        if self.postgres:
            after = await self.counters()
            for name in large:
                was, now = before.get(name, (0, 0)), after.get(name, (0, 0))
                if now[0] > was[0]:
                    scans.tables[name] = (now[0] - was[0], now[1] - was[1])
            # The counters may miss a scan (a backend reports them when idle, up to seconds
            # late) or count one of the measure before: every statement naming a large table
            # is explained as well.
            scans.plans = await self._explain_postgres(statements, large)
            return scans
        scans.counted = False
        scans.plans = await self._explain_sqlite(statements, large, scans.tables)
        return scans

    async def _explain_postgres(
        self, statements: dict[str, list[Any]], tables: set[str]
    ) -> list[str]:
        """EXPLAIN each statement naming a scanned table, as planned for its values and as the
        generic plan PostgreSQL may switch a prepared statement to after five runs (asyncpg
        prepares every statement); shown when either has a ``Seq Scan`` on the table."""
        shown: list[str] = []
        conn = await asyncpg.connect(self.url.split("?", 1)[0])
        try:
            for query, values in statements.items():
                if not any(_names(query, table) for table in tables):
                    continue
                for mode in ("auto", "force_generic_plan"):
                    await conn.execute(f"SET plan_cache_mode = {mode}")
                    try:
                        rows = await conn.fetch("EXPLAIN " + query, *values)
                    except Exception as err:  # a statement EXPLAIN cannot take as logged
                        shown.append(f"{_short(query)}\n    (EXPLAIN failed: {err!r:.200})")
                        break
                    plan = "\n".join(f"    {row[0]}" for row in rows)
                    if any(f"Seq Scan on {table}" in plan for table in tables):
                        label = "" if mode == "auto" else "  [generic plan]"
                        shown.append(f"{_short(query)}{label}\n{plan}")
                        break
                if len(shown) >= SHOWN_PER_MEASURE:
                    break
        finally:
            await conn.close()
        return shown

    async def _explain_sqlite(
        self, statements: dict[str, list[Any]], large: set[str], tables: dict[str, tuple[int, int]]
    ) -> list[str]:
        """Plans that scan a large table; ``tables`` counts the statements that do, by table."""
        shown: list[str] = []
        conn = db.connection()
        for query, values in statements.items():
            try:
                _, rows = await conn.execute_query("EXPLAIN QUERY PLAN " + query, values)
            except Exception:  # noqa: S112 (a statement EXPLAIN cannot take as logged)
                continue
            details = [str(row["detail"]) for row in rows]
            scanned = {name for detail in details if (name := _scans_sqlite(detail, large))}
            for name in scanned:
                tables[name] = (tables.get(name, (0, 0))[0] + 1, 0)
            if scanned and len(shown) < SHOWN_PER_MEASURE:
                plan = "\n".join(f"    {detail}" for detail in details)
                shown.append(f"{_short(query)}\n{plan}")
        return shown


def _scans_sqlite(detail: str, large: set[str]) -> str | None:
    """The large table a plan line scans without an index, if it does."""
    match = re.match(r"SCAN (\w+)", detail)
    if match is None or match.group(1) not in large:
        return None
    return None if "USING INDEX" in detail or "USING COVERING INDEX" in detail else match.group(1)


def _names(query: str, table: str) -> bool:
    return re.search(rf'(?<![\w.])"?{re.escape(table)}"?(?![\w])', query) is not None


def _short(query: str, width: int = 400) -> str:
    text = " ".join(query.split())
    return "  " + (text if len(text) <= width else text[: width - 1] + "…")


def plans_text(plans: Sequence[str]) -> str:
    return "\n".join(plans)
