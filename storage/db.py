"""Database set-up: one Tortoise configuration for SQLite and PostgreSQL, chosen by URL."""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api.migrate import migrate as tortoise_migrate
from tortoise.migrations.executor import MigrationExecutor, MigrationTarget
from tortoise.transactions import in_transaction

from storage.models import AuditEvent, Location

DEFAULT_DATABASE_URL = "sqlite://var/keyturn.sqlite3"
APP_LABEL = "models"
MODELS_MODULE = "storage.models"
MIGRATIONS_MODULE = "storage.migrations"


def connection_name(database_url: str) -> str:
    """The connection is named after its engine: Tortoise caches SQL per connection name, so a
    process that opens SQLite and then PostgreSQL (the test suite) must not share one name."""
    return "sqlite" if urlsplit(database_url).scheme == "sqlite" else "postgres"


def tortoise_config(database_url: str) -> dict[str, Any]:
    """The Tortoise configuration for ``database_url`` (``sqlite://path`` or ``postgres://…``)."""
    name = connection_name(database_url)
    return {
        "connections": {name: _connection_config(database_url)},
        "apps": _apps(name),
        "use_tz": True,
        "timezone": "UTC",
    }


def _apps(connection: str) -> dict[str, Any]:
    return {
        APP_LABEL: {
            "models": [MODELS_MODULE],
            "default_connection": connection,
            "migrations": MIGRATIONS_MODULE,
        }
    }


def _connection_config(database_url: str) -> dict[str, Any]:
    config: dict[str, Any] = expand_db_url(database_url)
    if connection_name(database_url) == "postgres":
        # asyncpg resets a pooled connection with a round trip (RESET ALL, UNLISTEN, advisory
        # unlock...) every time it goes back to the pool, which Tortoise does after every
        # statement outside a transaction: that doubled the cost of each query. Keyturn keeps no
        # session state (no SET, LISTEN, advisory locks or cursors), and asyncpg still rolls back
        # a transaction left open before this hook runs.
        config["credentials"].setdefault("reset", _keep_session)
    return config


async def _keep_session(connection: object) -> None:
    """Pool reset hook: nothing to undo (see ``_connection_config``)."""


#: A SQLite database holds renters' phone numbers and messages: only its owner may read it.
SQLITE_FILE_MODE = 0o600
#: The files SQLite keeps beside the database (write-ahead log, shared memory, rollback journal).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _sqlite_path(database_url: str) -> Path | None:
    if urlsplit(database_url).scheme != "sqlite":
        return None
    path = database_url.removeprefix("sqlite://").split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser().resolve()


def ensure_sqlite_directory(database_url: str) -> None:
    """Create the folder a SQLite file lives in, so a fresh checkout needs no manual step, and
    the file itself readable by its owner only (whatever the umask); SQLite gives its -wal,
    -shm and journal files the database file's mode."""
    path = _sqlite_path(database_url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, SQLITE_FILE_MODE))
        os.chmod(path, SQLITE_FILE_MODE)
    restrict_sqlite_companions(database_url)


def restrict_sqlite_companions(database_url: str) -> None:
    """Give the -wal, -shm and journal files beside a 0600 database the same mode."""
    path = _sqlite_path(database_url)
    if path is None or not path.exists() or path.stat().st_mode & 0o077:
        return  # a file its owner made readable to others stays as they chose
    for suffix in SQLITE_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists() and companion.stat().st_mode & 0o077:
            os.chmod(companion, SQLITE_FILE_MODE)


def dialect() -> str:
    """``sqlite`` or ``postgres``: the few queries that need SQL care branch on it."""
    name: str = connection().capabilities.dialect
    return name


def sql(statement: str) -> str:
    """``statement`` written with PostgreSQL's ``$1, $2…`` placeholders, for the open database.

    The few statements on the hot path of every turn are written by hand: Tortoise builds a
    filtered UPDATE or a bulk INSERT anew on every call, and that cost more than running it.
    Each placeholder must appear once, in order, so SQLite's ``?`` take the same values."""
    if dialect() == "postgres":
        return statement
    return _PLACEHOLDER.sub("?", statement)


_PLACEHOLDER = re.compile(r"\$\d+")


def connection() -> BaseDBAsyncClient:
    name = Location._meta.default_connection or "default"  # every model shares it
    client: BaseDBAsyncClient = connections.get(name)
    return client


async def open_database(database_url: str) -> None:
    """Connect the models to ``database_url`` for this process."""
    ensure_sqlite_directory(database_url)
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)
    if dialect() == "sqlite":
        # WAL lets the sandbox page read while the engine writes; foreign keys are off by default.
        await connection().execute_script("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;")
        restrict_sqlite_companions(database_url)


async def close_database() -> None:
    await Tortoise.close_connections()


async def migrate(database_url: str) -> list[str]:
    """Apply every migration not yet applied; returns the names applied."""
    ensure_sqlite_directory(database_url)
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")

    try:
        await tortoise_migrate(config=tortoise_config(database_url), progress=progress)
    finally:
        await Tortoise.close_connections()
    return applied


def database_missing(database_url: str) -> bool:
    """True for a SQLite URL whose file does not exist (opening it would create it)."""
    path = _sqlite_path(database_url)
    return path is not None and not path.exists()


async def pending_migrations() -> list[str]:
    """The migrations ``migrate`` would apply to the open database, by name; changes nothing
    (an unmigrated database has no migration table, and every migration is pending)."""
    client = connection()
    executor = MigrationExecutor(client, _apps(client.connection_name))
    steps = await executor.plan([MigrationTarget(app_label=APP_LABEL, name="__latest__")])
    return [f"{step.migration.app_label}.{step.migration.name}" for step in steps]


async def ping() -> bool:
    """True when the database answers a trivial query."""
    try:
        await connection().execute_query("SELECT 1")
    except Exception:
        return False
    return True


class _ProbeRolledBack(Exception):
    """Ends the write probe's transaction without committing it."""


#: Bigger than a database page, so the probe needs room to grow as a turn's writes do.
_PROBE_BYTES = 8 * 1024


async def can_write() -> bool:
    """True when the database takes a write (see ``write_error``)."""
    return await write_error() is None


async def write_error() -> str | None:
    """None when the database takes a write, else why not, in one line. A row bigger than a
    page is inserted and rolled back, so nothing is kept and no two workers touch the same row.
    A full disk (SQLite's SQLITE_FULL), a read-only database, missing tables or a lost
    connection all answer why."""
    try:
        async with in_transaction() as conn:
            await AuditEvent.create(
                at=datetime.now(UTC),
                actor="readiness",
                action="probe",
                details={"room": secrets.token_hex(_PROBE_BYTES // 2)},
                using_db=conn,
            )
            raise _ProbeRolledBack
    except _ProbeRolledBack:
        return None
    except Exception as err:
        return " ".join(f"{type(err).__name__}: {err}".split())


def redacted_url(database_url: str) -> str:
    """``database_url`` without its password, fit to show in a message or a log."""
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + netloc))


#: For Tortoise's own CLI (`tortoise makemigrations`), configured in pyproject.toml.
TORTOISE_ORM = tortoise_config(os.environ.get("KEYTURN_DATABASE_URL", DEFAULT_DATABASE_URL))
