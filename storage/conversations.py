"""The write every renter turn ends with, in hand-written SQL (see ``storage.db.sql``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import sql
from storage.models import Conversation

_SAVE_TURN = (
    "UPDATE conversation SET state = $1, data = $2, language = $3, renter_id = $4,"
    " last_inbound_at = $5, version = $6, updated_at = $7 WHERE id = $8 AND version = $9"
)


async def save_turn(
    conn: BaseDBAsyncClient,
    conversation: Conversation,
    *,
    state: str,
    data: dict[str, Any],
    language: str,
    renter_id: int,
    at: datetime,
) -> bool:
    """Store a turn's new state if nobody saved this conversation since it was read.

    False when its version moved on (another worker's turn, a staff takeover): the caller
    recomputes the turn from what is stored now."""
    encode = Conversation._meta.fields_map["data"].to_db_value
    saved, _ = await conn.execute_query(
        sql(_SAVE_TURN),
        [
            state,
            encode(data, conversation),
            language,
            renter_id,
            at,
            conversation.version + 1,
            at,
            conversation.id,
            conversation.version,
        ],
    )
    return saved == 1
