"""What every renter turn reads first and writes last, in hand-written SQL.

See ``storage.db.sql`` for why these statements are not built by the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import connection, sql
from storage.models import Conversation, Message, Renter

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


#: Every column of ``renter``; the statement budget tests check the list against the model.
RENTER_COLUMNS = (
    "id",
    "phone",
    "telegram_id",
    "name",
    "language",
    "opted_out",
    "opted_out_at",
    "verified_at",
    "created_at",
    "updated_at",
)
_READ = (
    "SELECT c.*, r.id AS renter__id, r.phone AS renter__phone,"
    " r.telegram_id AS renter__telegram_id, r.name AS renter__name,"
    " r.language AS renter__language, r.opted_out AS renter__opted_out,"
    " r.opted_out_at AS renter__opted_out_at, r.verified_at AS renter__verified_at,"
    " r.created_at AS renter__created_at, r.updated_at AS renter__updated_at"
    " FROM conversation c LEFT JOIN renter r ON r.id = c.renter_id"
    " WHERE c.channel = $1 AND c.address = $2"
)


async def read_conversation(
    channel: str, address: str
) -> tuple[Conversation, Renter | None] | None:
    """The conversation with this address and its renter, in one query; None if there is none.

    Rows become models the way Tortoise's own queries make them (``_init_from_db``)."""
    rows = await connection().execute_query_dict(sql(_READ), [channel, address])
    if not rows:
        return None
    row = rows[0]
    renter_values = {column: row.pop(f"renter__{column}") for column in RENTER_COLUMNS}
    conversation = Conversation._init_from_db(**row)
    if renter_values["id"] is None:
        return conversation, None
    return conversation, Renter._init_from_db(**renter_values)


#: A renter's first message: the renter is found by phone or Telegram id, or added, in one
#: statement (the no-op update makes an existing row come back through RETURNING).
_RENTER_BY = {
    column: (
        f"INSERT INTO renter ({column}, name, opted_out, created_at, updated_at)"  # noqa: S608 (a fixed column name)
        f" VALUES ($1, $2, $3, $4, $5) ON CONFLICT ({column})"
        f" DO UPDATE SET {column} = EXCLUDED.{column} RETURNING *"
    )
    for column in ("phone", "telegram_id")
}
_ADD_CONVERSATION = (
    "INSERT INTO conversation (channel, address, renter_id, state, data, version, created_at,"
    " updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7)"
    " ON CONFLICT (channel, address) DO NOTHING RETURNING *"
)


async def find_or_add_renter(
    *, phone: str | None = None, telegram_id: int | None = None, name: str, at: datetime
) -> Renter:
    """The renter with this phone number or Telegram id, added (with ``name``) if new."""
    column, value = ("phone", phone) if phone is not None else ("telegram_id", telegram_id)
    if value is None:
        raise ValueError("a renter is found by phone or by Telegram id")
    rows = await connection().execute_query_dict(
        sql(_RENTER_BY[column]), [value, name, False, at, at]
    )
    return Renter._init_from_db(**rows[0])


_ADD_RENTER = (
    "INSERT INTO renter (name, opted_out, created_at, updated_at) VALUES ($1, $2, $3, $4)"
    " RETURNING *"
)


async def add_renter(*, name: str, at: datetime) -> Renter:
    """A renter known by no phone number or Telegram id: found only through its conversation."""
    rows = await connection().execute_query_dict(sql(_ADD_RENTER), [name, False, at, at])
    return Renter._init_from_db(**rows[0])


async def forget_renter(renter_id: int) -> None:
    """Remove a renter added for a conversation that another worker started first."""
    await Renter.filter(id=renter_id).delete()


async def add_conversation(
    channel: str, address: str, renter_id: int, *, at: datetime
) -> Conversation | None:
    """Start the conversation with this address; None if another worker started it first."""
    encode = Conversation._meta.fields_map["data"].to_db_value
    rows = await connection().execute_query_dict(
        sql(_ADD_CONVERSATION),
        [channel, address, renter_id, "start", encode({}, Conversation), at, at],
    )
    return Conversation._init_from_db(**rows[0]) if rows else None


@dataclass(frozen=True)
class NewMessage:
    direction: str  # "in" or "out"
    body: str
    status: str
    created_at: datetime
    media: list[object] = field(default_factory=list)
    choices: list[object] = field(default_factory=list)
    sealed: bool = False
    provider_id: str | None = None


_MESSAGE_VALUES = 9


async def insert_messages(
    conn: BaseDBAsyncClient, conversation_id: int, messages: Sequence[NewMessage]
) -> list[int]:
    """Insert a turn's messages in one statement; returns their ids in the order given.

    Ids come from one sequence (PostgreSQL) or rowid (SQLite) in the order of the VALUES list,
    so the returned ids, sorted, line up with ``messages``."""
    if not messages:
        return []
    encode = Message._meta.fields_map["media"].to_db_value
    groups = []
    values: list[Any] = []
    for index, message in enumerate(messages):
        first = index * _MESSAGE_VALUES
        groups.append("(" + ", ".join(f"${first + n}" for n in range(1, _MESSAGE_VALUES + 1)) + ")")
        values += [
            conversation_id,
            message.direction,
            message.body,
            encode(message.media, Message),
            message.sealed,
            encode(message.choices, Message),
            message.provider_id,
            message.status,
            message.created_at,
        ]
    statement = (
        "INSERT INTO message (conversation_id, direction, body, media, sealed, choices,"  # noqa: S608 (only placeholders are joined in)
        " provider_id, status, created_at) VALUES " + ", ".join(groups) + " RETURNING id"
    )
    rows = await conn.execute_query_dict(sql(statement), values)
    return sorted(int(row["id"]) for row in rows)


_RECORD_SEND = "UPDATE message SET status = $1, provider_id = $2 WHERE id = $3"


async def record_send(
    message_id: int,
    *,
    status: str,
    provider_id: str | None = None,
    conn: BaseDBAsyncClient | None = None,
) -> None:
    """What became of sending an outbound message: ``sent`` with the provider's id for it, or
    ``undeliverable`` (in ``conn``'s transaction when given)."""
    await (conn or connection()).execute_query(sql(_RECORD_SEND), [status, provider_id, message_id])


async def recorded_provider_ids(
    provider_ids: Sequence[str], *, besides: int | None = None
) -> set[str]:
    """Which of these provider message ids are recorded on an outbound message already (other
    than message ``besides``)."""
    query = Message.filter(direction="out", provider_id__in=list(provider_ids))
    if besides is not None:
        query = query.exclude(id=besides)
    rows = await query.values_list("provider_id", flat=True)
    return {str(row) for row in rows}


_CLAIM_MESSAGE = (
    "INSERT INTO processed_webhook (provider, event_id, received_at) VALUES ($1, $2, $3)"
)


async def claim_message(
    conn: BaseDBAsyncClient, provider: str, event_id: str, *, at: datetime
) -> None:
    """Record in the turn's transaction that this provider message is being handled; a second
    delivery of it fails here with IntegrityError (the unique ``(provider, event_id)``)."""
    await conn.execute_query(sql(_CLAIM_MESSAGE), [provider, event_id, at])
