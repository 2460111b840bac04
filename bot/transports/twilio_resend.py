"""Sending again, once, a WhatsApp message Twilio accepted and WhatsApp then refused (63016).

Twilio usually answers free-form WhatsApp text with 201 ``queued`` and reports the closed 24-hour
window only later, on the status callback (``failed``/``undelivered`` with ``ErrorCode`` 63016).
The message is then staged again with its original payload (still sealed when it holds a PIN)
under the key ``outside-window:{message id}``, marked to go the closed-window way: the approved
Content template for its kind, else SMS. That key is staged once, in the unit of work that records
the failure (so neither is kept without the other), whatever the callback's status changed: a
callback Twilio posts again while the resend waits changes nothing, and a 63016 for the resend
itself (the resend has been sent), or a message whose send cannot be found, raises an ops alert
instead.
"""

from __future__ import annotations

import logging
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.dispatcher import OUTSIDE_WINDOW, not_delivered
from flows.effects import Outcome
from flows.messages import OutboundMessage
from storage.kinds import EffectKind
from storage.models import EffectState, Message, OutboxEffect
from storage.outbox import StagedEffect, enqueue_effects

log = logging.getLogger(__name__)

OUTSIDE_WHATSAPP_WINDOW = "63016"
REFUSED = "WhatsApp refused it outside the 24-hour window (63016)"


async def resend_outside_window(
    conn: BaseDBAsyncClient, provider_id: str, *, now: datetime
) -> Outcome:
    """In ``conn``'s unit of work, stage the closed-window resend of the message Twilio knows as
    ``provider_id``; the Outcome alerts instead when the resend has been sent already (this is
    its own refusal) or the message's send cannot be found."""
    row = await Message.filter(provider_id=provider_id, direction="out").using_db(conn).first()
    if row is None:
        log.info("63016 for %s, which is no message of ours", provider_id)
        return Outcome()
    key = f"outside-window:{row.id}"
    resend = await OutboxEffect.filter(idempotency_key=key).using_db(conn).first()
    if resend is not None and resend.state == EffectState.PENDING:
        log.info("63016 for message %s again; its resend is on its way", row.id)
        return Outcome()
    original = await _send_effect(conn, row)
    if resend is not None or original is None:
        sent = resend or original
        message = (
            OutboundMessage.from_payload(sent.payload["message"])  # type: ignore[arg-type]
            if sent is not None
            else OutboundMessage(channel="whatsapp", address="", text="")
        )
        return Outcome(alerts=[not_delivered(row.id, message, REFUSED)])
    await enqueue_effects(
        conn,
        [StagedEffect(EffectKind.SEND_MESSAGE, {**original.payload, OUTSIDE_WINDOW: True}, key)],
        now=now,
    )
    log.info("message %s refused outside the WhatsApp window: sending it again", row.id)
    return Outcome()


async def _send_effect(conn: BaseDBAsyncClient, row: Message) -> OutboxEffect | None:
    """The first ``send_message`` effect of ``row``: staged with it, so at or after its time."""
    candidates = (
        await OutboxEffect.filter(kind=EffectKind.SEND_MESSAGE, created_at__gte=row.created_at)
        .using_db(conn)
        .order_by("id")
    )
    return next(
        (
            effect
            for effect in candidates
            if effect.payload.get("message_id") == row.id and not effect.payload.get(OUTSIDE_WINDOW)
        ),
        None,
    )
