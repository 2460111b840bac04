"""Provider event ids already handled: a redelivered webhook is recognised by its id alone."""

from __future__ import annotations

from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import sql

_CLAIM_EVENT = (
    "INSERT INTO processed_webhook (provider, event_id, received_at) VALUES ($1, $2, $3)"
    " ON CONFLICT (provider, event_id) DO NOTHING RETURNING id"
)


async def claim_event(
    conn: BaseDBAsyncClient, provider: str, event_id: str, *, at: datetime
) -> bool:
    """Record in the caller's transaction that this provider event is being handled; False
    when it was recorded before (a redelivery). Only that duplicate counts as "seen": any other
    constraint the event's changes break still raises, so the delivery fails and is retried.
    On PostgreSQL a delivery racing an uncommitted one waits for it, then finds it recorded."""
    rows = await conn.execute_query_dict(sql(_CLAIM_EVENT), [provider, event_id, at])
    return bool(rows)
