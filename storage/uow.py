"""The unit of work: the one place Keyturn opens a database transaction.

Only the runners (the conversation engine, the webhook routes, the outbox dispatcher, the timer
runner, the ops bot's command runner, the CLI and the sandbox routes) open one. Everything a
handler reads and writes goes through the connection it is handed, and the runner commits the
state change and its effects together when the block ends; an exception rolls all of it back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

#: What a handler is given: the connection of the runner's open transaction.
UnitOfWork = BaseDBAsyncClient


@asynccontextmanager
async def unit_of_work() -> AsyncIterator[UnitOfWork]:
    """Open a transaction, hand its connection to the caller, commit when the block ends."""
    async with in_transaction() as conn:
        yield conn
