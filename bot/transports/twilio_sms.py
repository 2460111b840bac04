"""Channel ``sms`` on Twilio: plain text with its choices as numbered lines, photos by MMS.

A number that sent STOP is blocked by Twilio (21610); the send's outcome marks its renter opted
out too, so Keyturn's state says what Twilio's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from bot.channels import Undeliverable, numbered_text
from bot.dispatcher import RecipientRefused
from bot.transports.twilio_account import (
    OPTED_OUT,
    UNDELIVERABLE_CODES,
    RecipientUnreachable,
    TwilioAccount,
    fit_body,
)
from flows.clock import Clock
from flows.effects import FollowUp, Outcome
from flows.messages import Media, OutboundMessage
from storage.models import Renter


class OptedOut(RecipientUnreachable, RecipientRefused):
    """Twilio blocks this SMS number: it sent STOP (21610). Keyturn marks its renter opted out
    too, with the send's outcome."""

    def __init__(self, learnt: FollowUp) -> None:
        Undeliverable.__init__(self, f"twilio {OPTED_OUT}: {UNDELIVERABLE_CODES[OPTED_OUT]}")
        self.code = OPTED_OUT
        self.learnt = learnt


class TwilioSmsChannel:
    """Channel ``sms``: plain text with numbered choices from the configured SMS number."""

    name = "sms"

    def __init__(self, account: TwilioAccount, *, from_number: str, clock: Clock) -> None:
        self.account = account
        self.from_number = from_number
        self.clock = clock

    async def send(self, message: OutboundMessage, idempotency_key: str) -> str:
        return await self.send_text(message.address, numbered_text(message), message.media)

    async def find_sent(self, message: OutboundMessage, since: datetime) -> list[str]:
        return await self.account.find_message(
            to=message.address,
            from_=self.from_number,
            body=fit_body(numbered_text(message)),
            since=since,
            media=len(message.media),
        )

    async def send_text(self, address: str, text: str, media: Sequence[Media] = ()) -> str:
        """Text, and photos by MMS (where the carrier takes MMS)."""
        params: dict[str, str | list[str]] = {"to": address, "from_": self.from_number}
        if text:
            params["body"] = fit_body(text)
        if media:
            params["media_url"] = self.account.media_urls(media)
        try:
            return await self.account.create_message(**params)
        except RecipientUnreachable as err:
            if err.code == OPTED_OUT:
                raise OptedOut(_mirror_opt_out(address, self.clock.now())) from err
            raise


def _mirror_opt_out(address: str, now: datetime) -> FollowUp:
    """Twilio blocks an SMS number that sent STOP; keep Keyturn's state the same."""

    async def mark(conn: BaseDBAsyncClient) -> Outcome:
        await (
            Renter.filter(phone=address, opted_out=False)
            .using_db(conn)
            .update(opted_out=True, opted_out_at=now, updated_at=now)
        )
        return Outcome()

    return mark
