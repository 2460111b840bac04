"""Twilio SMS and WhatsApp: the Channel port on Twilio's REST API, and media downloads.

One ``TwilioAccount`` (``twilio_account``) owns the SDK client and the session that downloads
MMS/WhatsApp media (``twilio_media``). The SMS and WhatsApp channels share it and differ only in
how they render a message:

- SMS (``twilio_sms``): the text with its choices as numbered lines.
- WhatsApp (``twilio_whatsapp``): the same text while the renter wrote within the last 24 hours;
  outside that window the approved Content template for the message's ``kind``, else SMS, else
  it is undeliverable.

Twilio errors become ours: ``Undeliverable`` where retrying cannot help, ``ChannelError`` (which
the outbox retries) otherwise. Twilio's Messages API takes no idempotency key, so a retried send
first looks for itself among the recipient's newest messages (``find_sent``): a send that timed
out after Twilio accepted it is then recorded rather than sent twice.

Nothing here logs a message body (it may hold a PIN), a phone number or the auth token.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.transports.twilio_account import (
    OutsideWhatsAppWindow,
    RecipientUnreachable,
    TwilioAccount,
)
from bot.transports.twilio_media import MediaRefused
from bot.transports.twilio_sms import OptedOut, TwilioSmsChannel
from bot.transports.twilio_whatsapp import TwilioWhatsAppChannel
from flows.clock import Clock

__all__ = [
    "MediaRefused",
    "OptedOut",
    "OutsideWhatsAppWindow",
    "RecipientUnreachable",
    "TwilioAccount",
    "TwilioChannel",
    "TwilioSmsChannel",
    "TwilioWhatsAppChannel",
    "twilio_channels",
]

TwilioChannel = TwilioSmsChannel | TwilioWhatsAppChannel


def twilio_channels(
    account: TwilioAccount,
    *,
    clock: Clock,
    sms_from: str | None,
    whatsapp_from: str | None,
    whatsapp_templates: Mapping[str, str] | None = None,
) -> dict[str, TwilioChannel]:
    """The channels a Twilio configuration runs: ``sms`` and/or ``whatsapp``, keyed by name."""
    channels: dict[str, TwilioChannel] = {}
    sms = TwilioSmsChannel(account, from_number=sms_from, clock=clock) if sms_from else None
    if sms is not None:
        channels[sms.name] = sms
    if whatsapp_from:
        whatsapp = TwilioWhatsAppChannel(
            account,
            from_address=whatsapp_from,
            clock=clock,
            templates=whatsapp_templates,
            sms=sms,
        )
        channels[whatsapp.name] = whatsapp
    return channels
