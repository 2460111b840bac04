"""``keyturn migrate`` and ``keyturn inventory``: the database's schema, and the locations,
items, locks and staff it holds as an inventory file says."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from pathlib import Path

from bot.cli.context import command_settings
from bot.config import Settings
from flows.clock import SystemClock
from flows.inventory import apply_inventory, describe_inventory, load_inventory
from storage import db
from storage.uow import unit_of_work


def migrate(args: argparse.Namespace) -> int:
    settings = command_settings()
    applied = asyncio.run(db.migrate(settings.database_url))
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print("database is up to date")
    return 0


async def apply_inventory_file(
    settings: Settings, path: Path, *, now: datetime | None = None
) -> list[str]:
    """Make the database match the inventory file, whole or not at all; what changed."""
    inventory = load_inventory(path, settings.lead_times)
    await db.open_database(settings.database_url)
    try:
        async with unit_of_work() as conn:  # the file applies whole or not at all
            changes = await apply_inventory(conn, inventory, now=now or SystemClock().now())
    finally:
        await db.close_database()
    return changes.lines or ["inventory unchanged"]


def inventory_apply(args: argparse.Namespace) -> int:
    settings = command_settings()
    for line in asyncio.run(apply_inventory_file(settings, args.file)):
        print(line)
    return 0


def inventory_show(args: argparse.Namespace) -> int:
    settings = command_settings()

    async def show() -> list[str]:
        await db.open_database(settings.database_url)
        try:
            return await describe_inventory(settings.lead_times)
        finally:
            await db.close_database()

    for line in asyncio.run(show()):
        print(line)
    return 0
