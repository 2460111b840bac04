"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, and an injected clock."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tortoise.models import Model

from storage import db, models

POSTGRES_ADMIN_URL = os.environ.get(
    "KEYTURN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test"
)
TABLES = tuple(
    model._meta.db_table
    for model in vars(models).values()
    if isinstance(model, type) and issubclass(model, Model) and model is not Model
)


class FakeClock:
    """A clock the test moves by hand; nothing sleeps."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def asyncpg_url(url: str) -> str:
    """``url`` as asyncpg spells it (``postgresql://``)."""
    return url.replace("postgres://", "postgresql://", 1)


@contextmanager
def scratch_postgres(name: str) -> Iterator[str]:
    """An empty PostgreSQL database called ``name`` for the length of the block, then dropped."""

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(asyncpg_url(POSTGRES_ADMIN_URL))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(POSTGRES_ADMIN_URL, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    asyncio.run(db.migrate(f"sqlite://{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own on the PostgreSQL server, migrated once, dropped at the end."""
    name = f"keyturn_test_{os.getpid()}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL.replace("postgres://", "postgresql://", 1))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}"'))
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as err:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is needed for these tests: {err}")
    url = _with_database(POSTGRES_ADMIN_URL, name)
    asyncio.run(db.migrate(url))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "keyturn.sqlite3"
        shutil.copy(template, path)
        return f"sqlite://{path}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    """The models connected to a fresh, migrated database; yields its URL."""
    await db.open_database(database_url)
    if db.dialect() == "postgres":
        await db.connection().execute_script(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in TABLES) + " RESTART IDENTITY CASCADE"
        )
    try:
        yield database_url
    finally:
        await db.close_database()
