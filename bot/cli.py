"""The ``keyturn`` command: serve, demo, migrate, inventory apply|show."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web
from cryptography.fernet import Fernet

from bot.app import build_runtime, create_app
from bot.config import Settings, SettingsError
from flows.clock import SystemClock
from flows.inventory import InventoryError, apply_inventory, describe_inventory, load_inventory
from storage import db

log = logging.getLogger("keyturn")

DEMO_DIR = Path("var")
DEMO_INVENTORY = Path(__file__).resolve().parent / "demo" / "inventory.toml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("KEYTURN_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except SettingsError as err:
        print(f"keyturn: {err}", file=sys.stderr)
        return 2
    except InventoryError as err:
        print(f"keyturn: inventory refused:\n{err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyturn", description="Run a self-service rental business over chat."
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the service on the channels, payments and locks set in the environment"
    )
    _listen_options(serve)
    serve.add_argument(
        "--sandbox",
        action="store_true",
        help="also serve the sandbox page (never on a public address)",
    )
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo", help="run the embedded default: SQLite under var/, demo inventory, sandbox page"
    )
    _listen_options(demo)
    demo.add_argument("--reset", action="store_true", help="start again from an empty demo")
    demo.set_defaults(run=_demo)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(run=_migrate)

    inventory = commands.add_parser("inventory", help="locations, items, locks and staff")
    actions = inventory.add_subparsers(title="actions", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="make the database match an inventory TOML file")
    apply.add_argument("file", type=Path)
    apply.set_defaults(run=_inventory_apply)
    show = actions.add_parser("show", help="print the inventory as the database holds it")
    show.set_defaults(run=_inventory_show)
    return parser


def _listen_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default KEYTURN_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default KEYTURN_PORT or 8080)")


def _settings(env: dict[str, str] | None = None) -> Settings:
    return Settings.from_env(env if env is not None else dict(os.environ))


def _serve(args: argparse.Namespace) -> int:
    settings = _settings()
    settings.require_encryption_key()
    started = settings.started_providers()
    log.info("providers configured: %s", ", ".join(started) or "none")
    return _run(settings, args, sandbox=args.sandbox)


def _demo(args: argparse.Namespace) -> int:
    DEMO_DIR.mkdir(exist_ok=True)
    database = DEMO_DIR / "demo.sqlite3"
    if args.reset:
        for path in DEMO_DIR.glob("demo.sqlite3*"):
            path.unlink()
    key_file = DEMO_DIR / "demo.key"
    if not key_file.exists():
        key_file.write_bytes(Fernet.generate_key())
        key_file.chmod(0o600)
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith("KEYTURN_") and name not in ("KEYTURN_DATABASE_URL",)
    }
    env["KEYTURN_DATABASE_URL"] = f"sqlite://{database}"
    env["KEYTURN_ENCRYPTION_KEY"] = key_file.read_text().strip()
    settings = _settings(env)  # demo ignores real provider credentials on purpose
    applied = asyncio.run(db.migrate(settings.database_url))
    for name in applied:
        print(f"applied migration {name}")
    changes = asyncio.run(_apply(settings.database_url, DEMO_INVENTORY))
    for line in changes:
        print(line)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"Keyturn demo: open http://{host}:{port}/sandbox to chat as a renter and watch ops.")
    return _run(settings, args, sandbox=True)


def _run(settings: Settings, args: argparse.Namespace, *, sandbox: bool) -> int:
    runtime = build_runtime(settings, clock=SystemClock(), sandbox=sandbox)
    app = create_app(runtime, sandbox=sandbox)
    web.run_app(
        app,
        host=args.host or settings.host,
        port=args.port or settings.port,
        print=None,
        access_log=None,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    applied = asyncio.run(db.migrate(settings.database_url))
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print("database is up to date")
    return 0


async def _apply(database_url: str, path: Path) -> list[str]:
    inventory = load_inventory(path)
    await db.open_database(database_url)
    try:
        changes = await apply_inventory(inventory, now=SystemClock().now())
    finally:
        await db.close_database()
    return changes.lines or ["inventory unchanged"]


def _inventory_apply(args: argparse.Namespace) -> int:
    settings = _settings()
    for line in asyncio.run(_apply(settings.database_url, args.file)):
        print(line)
    return 0


def _inventory_show(args: argparse.Namespace) -> int:
    settings = _settings()

    async def show() -> list[str]:
        await db.open_database(settings.database_url)
        try:
            return await describe_inventory()
        finally:
            await db.close_database()

    for line in asyncio.run(show()):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
