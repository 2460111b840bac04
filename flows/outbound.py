"""Staging what Keyturn sends: the outbound Message row and its send effect, written together in
the runner's unit of work, so a message is stored exactly when it is queued to go.

A message whose kind carries a PIN is sealed, its text and its template's variables alike, both
in the stored row and in the effect's payload: opened only to send or show it. Replies to an
inbound message are stored with it in one statement and keyed by it; a notice Keyturn sends on
its own is keyed by its own row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flows.effects import Effect
from flows.messages import Choice, Media, OutboundMessage
from storage.conversations import NewMessage, StagedReply, insert_messages
from storage.kinds import EffectKind
from storage.sealing import Sealer
from storage.uow import UnitOfWork

#: Kinds whose text carries a PIN: stored and queued encrypted, opened only to send or show it.
SEALED_KINDS = frozenset({"pin"})
SEND_EFFECT = EffectKind.SEND_MESSAGE


@dataclass(frozen=True)
class Outgoing:
    """One message to a conversation, in clear; ``stage_messages`` seals it where it must."""

    channel: str
    address: str
    text: str
    kind: str = "reply"
    choices: tuple[Choice, ...] = ()
    template_variables: Mapping[str, str] = field(default_factory=dict)
    media: tuple[Media, ...] = ()


def prepare_messages(
    messages: Sequence[Outgoing], *, sealer: Sealer | None, now: datetime
) -> list[StagedReply]:
    """Each message's row (sealed where its kind carries a PIN) and the payload of the effect
    that sends it, less the row's id."""
    staged = []
    for message in messages:
        sealed = sealer is not None and message.kind in SEALED_KINDS
        text, variables = message.text, dict(message.template_variables)
        if sealed and sealer is not None:
            # The template's variables carry the PIN as the text does: both are sealed.
            text = sealer.seal(text)
            variables = {name: sealer.seal(value) for name, value in variables.items()}
        sent = OutboundMessage(
            channel=message.channel,
            address=message.address,
            text=text,
            choices=message.choices,
            kind=message.kind,
            template_variables=variables,
            media=message.media,
        )
        row = NewMessage(
            direction="out",
            body=text,
            status="queued",
            created_at=now,
            choices=[[choice.value, choice.label] for choice in message.choices],
            media=[{"url": m.url, "content_type": m.content_type} for m in message.media],
            sealed=sealed,
        )
        payload = {"message": sent.to_payload(), "sealed": sealed, "sealed_variables": sealed}
        staged.append(StagedReply(row, payload))
    return staged


def reply_key(inbound_id: int, index: int) -> str:
    """The idempotency key of the send of a turn's ``index``-th reply (``save_answered_turn``
    writes the same in SQL)."""
    return f"reply:{inbound_id}:{index}"


async def stage_messages(
    conn: UnitOfWork,
    conversation_id: int,
    messages: Sequence[Outgoing],
    *,
    sealer: Sealer | None,
    now: datetime,
    inbound: NewMessage | None = None,
) -> list[Effect]:
    """Store each message's row (after ``inbound``, the message they answer, when given: one
    statement for all) and return the effects that send them."""
    staged = prepare_messages(messages, sealer=sealer, now=now)
    before = [] if inbound is None else [inbound]
    ids = await insert_messages(conn, conversation_id, [*before, *(s.message for s in staged)])
    inbound_id = ids.pop(0) if inbound is not None else None
    effects = []
    for index, (row_id, reply) in enumerate(zip(ids, staged, strict=True)):
        key = reply_key(inbound_id, index) if inbound_id is not None else f"notify:{row_id}"
        effects.append(Effect(SEND_EFFECT, key, {"message_id": row_id, **reply.send_payload}))
    return effects


async def stage_message(
    conn: UnitOfWork,
    conversation_id: int,
    message: Outgoing,
    *,
    sealer: Sealer | None,
    now: datetime,
) -> Effect:
    """Store one message Keyturn sends on its own and return the effect that sends it."""
    [effect] = await stage_messages(conn, conversation_id, [message], sealer=sealer, now=now)
    return effect
