"""What a command starts from: its settings, and for those acting on locks, codes and bookings,
the runtime with the database open."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from bot.app import Runtime, build_runtime
from bot.config import Settings
from flows.clock import SystemClock
from storage import db


def command_settings(env: dict[str, str] | None = None, *, receiving: bool = False) -> Settings:
    """The settings a command needs: only ``serve`` receives webhooks, so only it needs the
    secrets they are verified with."""
    return Settings.from_env(env if env is not None else dict(os.environ), receiving=receiving)


async def with_runtime(work: Callable[[Runtime], Awaitable[int]]) -> int:
    """``work`` with the runtime the environment configures and its database open."""
    settings = command_settings()
    runtime = build_runtime(settings, clock=SystemClock())
    await db.open_database(settings.database_url)
    try:
        return await work(runtime)
    finally:
        await db.close_database()
