"""Sending again, once, a WhatsApp message Twilio accepted and WhatsApp then refused (63016).

Twilio usually answers free-form WhatsApp text with 201 ``queued`` and reports the closed 24-hour
window only later, on the status callback (``failed``/``undelivered`` with ``ErrorCode`` 63016).
The message is then staged again with its original payload (still sealed when it holds a PIN)
under the key ``outside-window:{message id}``, marked to go the closed-window way: the approved
Content template for its kind, else SMS. That key is staged once: a 63016 for the resend, or a
message that cannot be found, raises an ops alert instead.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.dispatcher import OUTSIDE_WINDOW, alert_not_delivered
from flows.messages import OutboundMessage
from storage.kinds import EffectKind
from storage.models import Message, OutboxEffect
from storage.outbox import StagedEffect, enqueue_effects
from storage.uow import unit_of_work

log = logging.getLogger(__name__)

OUTSIDE_WHATSAPP_WINDOW = "63016"


async def resend_outside_window(provider_id: str, *, now: datetime) -> bool:
    """Stage the closed-window resend of the message Twilio knows as ``provider_id``; False
    (after alerting) when it was resent already or its send cannot be found."""
    row = await Message.get_or_none(provider_id=provider_id, direction="out")
    if row is None:
        log.info("63016 for %s, which is no message of ours", provider_id)
        return False
    original = await _send_effect(row)
    if original is None or original.payload.get(OUTSIDE_WINDOW):
        message = (
            OutboundMessage.from_payload(original.payload["message"])  # type: ignore[arg-type]
            if original is not None
            else OutboundMessage(channel="whatsapp", address="", text="")
        )
        await alert_not_delivered(
            row.id, message, "WhatsApp refused it outside the 24-hour window (63016)", now=now
        )
        return False
    key = f"outside-window:{row.id}"
    async with unit_of_work() as conn:
        await enqueue_effects(
            conn,
            [
                StagedEffect(
                    EffectKind.SEND_MESSAGE, {**original.payload, OUTSIDE_WINDOW: True}, key
                )
            ],
            now=now,
        )
    log.info("message %s refused outside the WhatsApp window: sending it again", row.id)
    return True


async def _send_effect(row: Message) -> OutboxEffect | None:
    """The newest ``send_message`` effect of ``row``: staged with it, so at or after its time."""
    candidates = await OutboxEffect.filter(
        kind=EffectKind.SEND_MESSAGE, created_at__gte=row.created_at
    ).order_by("-id")
    return next(
        (effect for effect in candidates if effect.payload.get("message_id") == row.id), None
    )
