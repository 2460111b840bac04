"""What every renter turn reads first and writes last, in hand-written SQL.

See ``storage.db.sql`` for why these statements are not built by the ORM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.db import connection, dialect, sql
from storage.models import Conversation, Message, OutboxEffect, Renter

_SAVE_TURN = (
    "UPDATE conversation SET state = $1, data = $2, language = $3, renter_id = $4,"
    " last_inbound_at = $5, version = $6, updated_at = $7 WHERE id = $8 AND version = $9"
)


#: On PostgreSQL the turn's message is claimed in the same statement (a data-modifying WITH
#: runs whether or not the UPDATE reads it): one round trip instead of two. It starts with
#: WITH, so the client fetches what RETURNING gives: one row when the turn was saved.
_CLAIM_AND_SAVE_TURN = (
    "WITH claimed AS (INSERT INTO processed_webhook (provider, event_id, received_at)"  # noqa: S608 (fixed text joined)
    " VALUES ($10, $11, $12)) " + _SAVE_TURN + " RETURNING id"
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
    claim: tuple[str, str] | None = None,
) -> bool:
    """Store a turn's new state if nobody saved this conversation since it was read.

    ``claim`` (provider, event id) records that the provider message is being handled, as
    ``claim_message`` does: a second delivery fails with IntegrityError.

    False when its version moved on (another worker's turn, a staff takeover): the caller
    recomputes the turn from what is stored now."""
    if claim is not None and dialect() != "postgres":
        await claim_message(conn, *claim, at=at)
    encode = Conversation._meta.fields_map["data"].to_db_value
    values = [
        state,
        encode(data, conversation),
        language,
        renter_id,
        at,
        conversation.version + 1,
        at,
        conversation.id,
        conversation.version,
    ]
    if claim is not None and dialect() == "postgres":
        saved, _ = await conn.execute_query(_CLAIM_AND_SAVE_TURN, [*values, *claim, at])
    else:
        saved, _ = await conn.execute_query(sql(_SAVE_TURN), values)
    return saved == 1


@dataclass(frozen=True)
class StagedReply:
    """A reply's row and the payload of the effect that sends it (its ``message_id`` is added
    when the row has one)."""

    message: NewMessage
    send_payload: dict[str, Any]


def saves_answered_turns() -> bool:
    """Whether ``save_answered_turn`` can store a whole turn in one statement (PostgreSQL's
    data-modifying WITH; SQLite has none)."""
    return dialect() == "postgres"


_MESSAGE_COLUMNS = "direction, body, media, sealed, choices, provider_id, status, created_at"
_MESSAGE_CASTS = ("text", "text", "jsonb", "boolean", "jsonb", "text", "text", "timestamptz")
#: A turn that only answers, in one statement and so atomic without a transaction: the
#: conditional save; then, only if it saved, the dedupe row (whose unique key refuses a second
#: delivery), the inbound message and the replies (ids drawn first, so each reply's send effect
#: knows its row), and one send effect per reply, keyed by the inbound message as
#: ``stage_messages`` keys them. It returns one row when the turn was saved.
_ANSWERED_TURN = (
    "WITH saved AS (" + _SAVE_TURN + " RETURNING id),"  # noqa: S608 (fixed text and placeholders)
    " claimed AS (INSERT INTO processed_webhook (provider, event_id, received_at)"
    " SELECT $10::text, $11::text, $12::timestamptz FROM saved),"
    " ids AS (SELECT n, nextval(pg_get_serial_sequence('message', 'id')) AS id"
    " FROM generate_series(0, {last}) AS n),"
    " added AS (INSERT INTO message (id, conversation_id, " + _MESSAGE_COLUMNS + ")"
    " SELECT ids.id, saved.id, v.direction, v.body, v.media, v.sealed, v.choices, v.provider_id,"
    " v.status, v.created_at FROM saved JOIN ids ON true JOIN (VALUES {messages})"
    " AS v(n, " + _MESSAGE_COLUMNS + ") ON v.n = ids.n),"
    " sends AS (INSERT INTO outbox_effect (kind, payload, idempotency_key, state, critical,"
    " attempts, next_attempt_at, last_error, alerted, claimed_by, created_at)"
    " SELECT $13::text, jsonb_build_object('message_id', ids.id) || s.payload,"
    " 'reply:' || inbound.id || ':' || (ids.n - 1), $14::text, false, 0, $12, '', false, '', $12"
    " FROM saved JOIN ids ON ids.n > 0 JOIN ids AS inbound ON inbound.n = 0"
    " JOIN (VALUES {payloads}) AS s(n, payload) ON s.n = ids.n"
    " ON CONFLICT (idempotency_key) DO NOTHING)"
    " SELECT id FROM saved"
)


async def save_answered_turn(
    conversation: Conversation,
    *,
    state: str,
    data: dict[str, Any],
    language: str,
    renter_id: int,
    at: datetime,
    claim: tuple[str, str],
    inbound: NewMessage,
    replies: Sequence[StagedReply],
    send_kind: str,
    pending: str,
) -> bool:
    """Store a turn that only answers (its state, the dedupe ``claim``, the inbound message,
    the replies and their ``send_kind`` effects, staged ``pending``) in one statement, where
    ``saves_answered_turns``. False, and nothing written, when the conversation's version moved
    on; IntegrityError when the message was handled before."""
    encode_payload = OutboxEffect._meta.fields_map["payload"].to_db_value
    values: list[Any] = [
        state,
        Conversation._meta.fields_map["data"].to_db_value(data, conversation),
        language,
        renter_id,
        at,
        conversation.version + 1,
        at,
        conversation.id,
        conversation.version,
        *claim,
        at,
        send_kind,
        pending,
    ]
    messages = []
    for n, message in enumerate([inbound, *(reply.message for reply in replies)]):
        first = len(values) + 1
        casts = ", ".join(f"${first + i}::{cast}" for i, cast in enumerate(_MESSAGE_CASTS))
        messages.append(f"({n}, {casts})")
        values += _message_values(message)
    payloads = []
    for n, reply in enumerate(replies, start=1):
        payloads.append(f"({n}, ${len(values) + 1}::jsonb)")
        values.append(encode_payload(reply.send_payload, OutboxEffect))
    statement = _ANSWERED_TURN.format(
        last=len(replies),
        messages=", ".join(messages),
        # No reply: a VALUES list that joins nothing.
        payloads=", ".join(payloads) or "(0, NULL::jsonb)",
    )
    rows = await connection().execute_query_dict(statement, values)
    return bool(rows)


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


_RENTER_ALIASES = ", ".join(f"r.{column} AS renter__{column}" for column in RENTER_COLUMNS)
#: A renter with the conversation they used last (as ``order_by("-last_inbound_at", "-id")``
#: orders it on each database), in one query.
_READ_RENTER_AND_LATEST = (
    "SELECT c.*, " + _RENTER_ALIASES + " FROM renter r LEFT JOIN conversation c ON c.id = ("  # noqa: S608 (fixed column names)
    " SELECT id FROM conversation WHERE renter_id = r.id"
    " ORDER BY last_inbound_at DESC, id DESC LIMIT 1) WHERE r.id = $1"
)


async def read_renter_and_latest_conversation(
    renter_id: int, conn: BaseDBAsyncClient | None = None
) -> tuple[Renter, Conversation | None] | None:
    """The renter and the conversation they used last (None if they have none), in one query
    (in ``conn``'s transaction when given); None when there is no such renter."""
    rows = await (conn or connection()).execute_query_dict(
        sql(_READ_RENTER_AND_LATEST), [renter_id]
    )
    if not rows:
        return None
    row = rows[0]
    renter = Renter._init_from_db(
        **{column: row.pop(f"renter__{column}") for column in RENTER_COLUMNS}
    )
    if row["id"] is None:
        return renter, None
    return renter, Conversation._init_from_db(**row)


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


def _message_values(message: NewMessage) -> list[Any]:
    """A message's values in the order of ``_MESSAGE_COLUMNS``, as the database stores them."""
    encode = Message._meta.fields_map["media"].to_db_value  # the JSON columns' encoder
    return [
        message.direction,
        message.body,
        encode(message.media, Message),
        message.sealed,
        encode(message.choices, Message),
        message.provider_id,
        message.status,
        message.created_at,
    ]


async def insert_messages(
    conn: BaseDBAsyncClient, conversation_id: int, messages: Sequence[NewMessage]
) -> list[int]:
    """Insert a turn's messages in one statement; returns their ids in the order given.

    Ids come from one sequence (PostgreSQL) or rowid (SQLite) in the order of the VALUES list,
    so the returned ids, sorted, line up with ``messages``."""
    if not messages:
        return []
    groups = []
    values: list[Any] = []
    for index, message in enumerate(messages):
        first = index * _MESSAGE_VALUES
        groups.append("(" + ", ".join(f"${first + n}" for n in range(1, _MESSAGE_VALUES + 1)) + ")")
        values += [conversation_id, *_message_values(message)]
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


# --- Who answers the renter: the hand-off states ------------------------------------------------


class Handling(StrEnum):
    """Who answers a conversation's renter. Stored as ``agent_id`` (the staff member who has it)
    and the ``handoff`` mark in its data (the renter asked for a person)."""

    BOT = "bot"  # the bot answers
    WAITING = "waiting"  # the renter asked for a person; nobody has taken it yet
    TAKEN = "taken"  # a staff member has it; the bot relays what the renter sends


#: The data mark of a conversation waiting for a person.
REQUESTED = "requested"

#: Which hand-off state may follow which. The renter's asking for a person (BOT to WAITING) is
#: written by their turn (``save_turn``, guarded by the conversation's version); a person taking
#: it over, again after a release, or handing it back goes through ``move_handling``. TAKEN to
#: TAKEN is the same member taking it again (its idle timer starts over).
CONVERSATION_TRANSITIONS: Mapping[Handling, frozenset[Handling]] = {
    Handling.BOT: frozenset({Handling.WAITING, Handling.TAKEN}),
    Handling.WAITING: frozenset({Handling.TAKEN, Handling.BOT}),
    Handling.TAKEN: frozenset({Handling.TAKEN, Handling.BOT}),
}


class IllegalTransition(Exception):
    """A hand-off state change the table does not allow, or one made on a conversation that
    changed since it was read (its state is no longer the one the change was checked from)."""

    def __init__(self, conversation_id: int, was: Handling, to: Handling) -> None:
        super().__init__(f"conversation {conversation_id}: {was} to {to} is not allowed")
        self.conversation_id = conversation_id
        self.was = was
        self.to = to


def handling(conversation: Conversation) -> Handling:
    if conversation.agent_id is not None:
        return Handling.TAKEN
    if conversation.data.get("handoff") == REQUESTED:
        return Handling.WAITING
    return Handling.BOT


_MOVE_HANDLING = (
    "UPDATE conversation SET agent_id = $1, agent_since = $2, data = $3, version = $4,"
    " updated_at = $5 WHERE id = $6 AND version = $7"
)


async def move_handling(
    conn: BaseDBAsyncClient,
    conversation: Conversation,
    to: Handling,
    *,
    agent_id: int | None = None,
    at: datetime,
) -> None:
    """Hand ``conversation`` (as read) to the bot or to the staff member ``agent_id``, in one
    conditional UPDATE: it holds only if the conversation's version is still the one read, so
    the state the move was checked from is the state it is made from. The renter's pending
    "I asked for a person" and misunderstanding count are cleared either way.

    Raises IllegalTransition when the table forbids the move or the conversation moved on."""
    was = handling(conversation)
    if to not in CONVERSATION_TRANSITIONS[was] or to == Handling.WAITING:
        raise IllegalTransition(conversation.id, was, to)
    if (to == Handling.TAKEN) != (agent_id is not None):
        raise ValueError("a conversation is taken by a staff member, and handed back by none")
    data = dict(conversation.data)
    data.pop("handoff", None)
    data.pop("misunderstood", None)
    encode = Conversation._meta.fields_map["data"].to_db_value
    moved, _ = await conn.execute_query(
        sql(_MOVE_HANDLING),
        [
            agent_id,
            at if agent_id is not None else None,
            encode(data, conversation),
            conversation.version + 1,
            at,
            conversation.id,
            conversation.version,
        ],
    )
    if moved != 1:
        raise IllegalTransition(conversation.id, was, to)
    conversation.agent_id = agent_id
    conversation.agent_since = at if agent_id is not None else None
    conversation.data = data
    conversation.version += 1
