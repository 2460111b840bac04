"""How many SQL statements a renter turn and its reply cost: the budget that bounds throughput.

Counted, not timed (timing belongs in bench/): each statement is a round trip and a query built
in Python, and the benchmark showed the worker's CPU goes there. A change that adds statements to
the hot path fails here and says which ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from bot.app import Runtime
from storage import db
from storage.conversations import RENTER_COLUMNS, read_conversation
from storage.models import Conversation, Message, OutboxEffect, Renter
from tests.conftest import FakeClock
from tests.support import RecordingChannel, inbound

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


class _Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and isinstance(record.args, tuple):
            query = str(record.args[0])
        else:
            query = record.getMessage()
        if not query.lstrip().upper().startswith(TRANSACTION_CONTROL):
            self.seen.append(query.split(": [")[0][:160])


@contextmanager
def statements() -> Iterator[list[str]]:
    logger = logging.getLogger("tortoise.db_client")
    handler = _Statements()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _settled(runtime: Runtime, clock: FakeClock, sms: RecordingChannel) -> None:
    """A renter who has written before: their conversation and renter rows exist."""
    await runtime.engine.handle(inbound("hi", channel="sms", at=clock.now()))
    await runtime.dispatcher.run_once()
    assert sms.sent, "the greeting was sent"


async def test_a_plain_turn_and_its_reply_stay_within_budget(
    runtime: Runtime, clock: FakeClock
) -> None:
    sms = RecordingChannel("sms")
    runtime.channels["sms"] = sms
    await _settled(runtime, clock, sms)

    with statements() as turn:
        await runtime.engine.handle(inbound("HELP", channel="sms", at=clock.now()))
    with statements() as dispatch:
        await runtime.dispatcher.run_once()

    # Read the conversation with its renter; write the dedupe row, the conversation, the
    # inbound message, the reply and its outbox effect: one statement on PostgreSQL (and no
    # transaction around it), four on SQLite.
    budget = 2 if db.dialect() == "postgres" else 5
    assert len(turn) <= budget, "\n".join(turn)
    # Claim (one statement on PostgreSQL, select and update on SQLite), then mark done and
    # record the provider's message id (one statement on PostgreSQL).
    budget = 2 if db.dialect() == "postgres" else 4
    assert len(dispatch) <= budget, "\n".join(dispatch)
    assert len(sms.sent) == 2
    reply = await Message.filter(direction="out").order_by("-id").first()
    assert reply is not None and reply.status == "sent"
    # The send is keyed by the message it answers, and knows its own row, on either database.
    asked = await Message.filter(direction="in").order_by("-id").first()
    assert asked is not None and asked.body == "HELP" and asked.id < reply.id
    effect = await OutboxEffect.get(idempotency_key=f"reply:{asked.id}:0")
    assert effect.payload["message_id"] == reply.id and effect.state == "done"
    assert effect.payload["message"]["text"] == sms.sent[-1][0].text


async def test_a_redelivered_message_writes_nothing(runtime: Runtime, clock: FakeClock) -> None:
    sms = RecordingChannel("sms")
    runtime.channels["sms"] = sms
    await _settled(runtime, clock, sms)
    first = inbound("HELP", channel="sms", at=clock.now(), provider_id="SM-once")
    await runtime.engine.handle(first)
    messages = await Message.all().count()

    with statements() as again:
        result = await runtime.engine.handle(first)

    assert result.value == "duplicate"
    assert await Message.all().count() == messages
    # The turn's own writes were rolled back with the refused dedupe row; nothing else wrote.
    assert not [q for q in again if q.lstrip().upper().startswith("UPDATE")], again


async def test_the_hand_written_read_gives_what_the_orm_gives(
    runtime: Runtime, clock: FakeClock
) -> None:
    assert sorted(RENTER_COLUMNS) == sorted(Renter._meta.fields_db_projection.values())
    await runtime.engine.handle(inbound("hi", channel="sms", at=clock.now()))

    found = await read_conversation("sms", "+15550100001")

    assert found is not None
    conversation, renter = found
    stored = await Conversation.get(channel="sms", address="+15550100001").prefetch_related(
        "renter"
    )
    assert renter is not None and stored.renter is not None
    assert {f: getattr(renter, f) for f in Renter._meta.db_fields} == {
        f: getattr(stored.renter, f) for f in Renter._meta.db_fields
    }
    assert (conversation.id, conversation.state, conversation.data, conversation.version) == (
        stored.id,
        stored.state,
        stored.data,
        stored.version,
    )
    assert await read_conversation("sms", "+15550100999") is None


async def test_a_first_message_adds_renter_and_conversation_in_two_statements(
    runtime: Runtime, clock: FakeClock
) -> None:
    first = inbound("hi", channel="sms", at=clock.now())
    await runtime.journey.inventory.open_locations()  # read once per worker, then kept
    with statements() as turn:
        await runtime.engine.handle(first)
    # The read that finds nothing, the renter and the conversation, then the turn's own writes
    # (dedupe row, conversation, messages, effects: one statement on PostgreSQL); the
    # greeting's locations are in memory.
    assert len(turn) <= (4 if db.dialect() == "postgres" else 7), "\n".join(turn)
    conversation = await Conversation.get(channel="sms", address=first.address)
    renter = await Renter.get(phone=first.address)
    assert conversation.renter_id == renter.id and conversation.version == 1


async def test_the_same_phone_on_another_channel_is_the_same_renter(
    runtime: Runtime, clock: FakeClock
) -> None:
    from dataclasses import replace

    sms = inbound("hi", channel="sms", at=clock.now(), provider_id="SM-1")
    await runtime.engine.handle(replace(sms, display_name="Ana"))
    whatsapp = inbound("hola", channel="whatsapp", at=clock.now(), provider_id="SM-2")
    await runtime.engine.handle(replace(whatsapp, display_name="Ana WhatsApp"))
    [renter] = await Renter.filter(phone=sms.address)
    assert renter.name == "Ana", "the name from the first contact is kept"
    conversations = await Conversation.filter(renter_id=renter.id).order_by("channel")
    assert [c.channel for c in conversations] == ["sms", "whatsapp"]
