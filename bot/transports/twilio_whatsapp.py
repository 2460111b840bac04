"""Channel ``whatsapp`` on Twilio: how a message goes depends on WhatsApp's 24-hour window.

The same text as SMS while the renter wrote within the last 24 hours (``last_inbound_at`` of the
conversation); outside that window WhatsApp refuses free-form text (Twilio error 63016), so the
message goes as the approved Content template configured for its ``kind`` (``content_sid`` +
``content_variables``, no body), else by SMS when an SMS number is configured, else it is
undeliverable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from bot.channels import Undeliverable, numbered_text
from bot.transports.twilio_account import (
    MAX_WHATSAPP_MEDIA,
    OutsideWhatsAppWindow,
    TwilioAccount,
    fit_body,
)
from bot.transports.twilio_sms import TwilioSmsChannel
from flows.clock import Clock
from flows.messages import OutboundMessage
from storage.models import Conversation

log = logging.getLogger(__name__)

WHATSAPP_PREFIX = "whatsapp:"
#: WhatsApp accepts free-form text for 24 hours after the renter's last message. A message sent
#: in the last minutes could reach WhatsApp after the window closed, so those use the template.
WHATSAPP_WINDOW = timedelta(hours=24)
WHATSAPP_WINDOW_MARGIN = timedelta(minutes=5)


class TwilioWhatsAppChannel:
    """Channel ``whatsapp``: free-form text inside the 24-hour window, a template or SMS outside."""

    name = "whatsapp"

    def __init__(
        self,
        account: TwilioAccount,
        *,
        from_address: str,
        clock: Clock,
        templates: Mapping[str, str] | None = None,
        sms: TwilioSmsChannel | None = None,
    ) -> None:
        if not from_address.startswith(WHATSAPP_PREFIX):
            raise ValueError("the WhatsApp sender must start with 'whatsapp:'")
        self.account = account
        self.from_address = from_address
        self.clock = clock
        #: Message kind (pin, reminder, reply...) → approved Content template sid (HX...).
        self.templates = dict(templates or {})
        self.sms = sms

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        to = WHATSAPP_PREFIX + message.address
        text = numbered_text(message)
        if await self.within_window(message.address):
            params: dict[str, str | list[str]] = {"to": to, "from_": self.from_address}
            if text:
                params["body"] = fit_body(text)
            if message.media:
                params["media_url"] = self.account.media_urls(
                    message.media, most=MAX_WHATSAPP_MEDIA
                )
            try:
                return await self.account.create_message(**params)
            except OutsideWhatsAppWindow:
                log.info("WhatsApp refused free-form text (63016); using the closed-window path")
        return await self._outside_window(message, to, text)

    async def send_outside_window(self, message: OutboundMessage) -> str:
        """Send again a message WhatsApp refused after Twilio accepted it (63016 on the status
        callback): by its kind's template, else by SMS, else ``Undeliverable``."""
        return await self._outside_window(
            message, WHATSAPP_PREFIX + message.address, numbered_text(message)
        )

    async def find_sent(self, message: OutboundMessage, since: datetime) -> list[str]:
        """Free-form text already sent on WhatsApp, or by SMS when the window had closed. A
        template's text is Twilio's to render, so a template is not looked for."""
        found = await self.account.find_message(
            to=WHATSAPP_PREFIX + message.address,
            from_=self.from_address,
            body=fit_body(numbered_text(message)),
            since=since,
            media=len(message.media),
        )
        if not found and self.sms is not None:
            found = await self.sms.find_sent(message, since)
        return found

    async def within_window(self, address: str) -> bool:
        conversation = await Conversation.get_or_none(channel=self.name, address=address)
        last = conversation.last_inbound_at if conversation is not None else None
        if last is None:
            return False
        return self.clock.now() - last < WHATSAPP_WINDOW - WHATSAPP_WINDOW_MARGIN

    async def _outside_window(self, message: OutboundMessage, to: str, text: str) -> str:
        # A template carries no photo (Twilio 63030): a message with one goes by SMS (MMS).
        content_sid = None if message.media else self.templates.get(message.kind)
        if content_sid is not None:
            params = {"to": to, "from_": self.from_address, "content_sid": content_sid}
            if message.template_variables:
                params["content_variables"] = json.dumps(dict(message.template_variables))
            try:
                return await self.account.create_message(**params)
            except OutsideWhatsAppWindow as err:
                raise Undeliverable(
                    f"template {content_sid} for {message.kind!r} cannot open a conversation"
                ) from err
        if self.sms is not None:
            log.info("WhatsApp window closed, no template for %r: sending by SMS", message.kind)
            return await self.sms.send_text(message.address, text, message.media)
        raise Undeliverable(
            f"WhatsApp window closed, no template for {message.kind!r} and no SMS number"
        )
