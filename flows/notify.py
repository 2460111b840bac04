"""Messages Keyturn sends on its own (payment links, PINs, reminders), through the outbox.

They go to the conversation the renter used last, in its language, with a kind that lets a
channel pick an approved template where it needs one (WhatsApp outside 24 hours). A renter who
opted out gets only what the rental cannot work without (``required``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import DoesNotExist

from flows.effects import Outcome
from flows.i18n import Translator, renter_language
from flows.messages import Choice
from flows.outbound import SEALED_KINDS, Outgoing, stage_message
from flows.staging import stage_outcome
from storage.conversations import read_renter_and_latest_conversation
from storage.models import Conversation, Renter
from storage.sealing import Sealer

#: Kinds a renter who sent STOP still receives: without them the rental cannot go on.
REQUIRED_KINDS = frozenset({"pin", "payment_link", "receipt"})

__all__ = ["REQUIRED_KINDS", "SEALED_KINDS", "Notifier"]


async def language_of(renter_id: int, conn: BaseDBAsyncClient | None = None) -> str:
    """The language to write to a renter in, read from their row and latest conversation."""
    found = await read_renter_and_latest_conversation(renter_id, conn)
    if found is None:
        raise DoesNotExist(Renter)
    return renter_language(*found)


class Notifier:
    def __init__(self, translator: Translator, sealer: Sealer | None = None) -> None:
        self.translator = translator
        self.sealer = sealer

    async def language(self, renter: Renter, conversation: Conversation | None) -> str:
        return renter_language(renter, conversation)

    async def tell(
        self,
        conn: BaseDBAsyncClient,
        renter_id: int,
        key: str,
        *,
        now: datetime,
        kind: str = "notice",
        params: Mapping[str, object] | Callable[[str], Mapping[str, object]] | None = None,
        choices: tuple[Choice, ...] = (),
        template_variables: Mapping[str, str] | None = None,
    ) -> bool:
        """Stage one message to the renter; False when there is nobody to tell or they opted out.
        ``params`` may be a function of the renter's language (for amounts and times)."""
        found = await read_renter_and_latest_conversation(renter_id, conn)
        if found is None:
            raise DoesNotExist(Renter)
        renter, conversation = found
        if renter.opted_out and kind not in REQUIRED_KINDS:
            return False
        if conversation is None:
            return False
        language = await self.language(renter, conversation)
        if callable(params):
            params = params(language)
        text = self.translator.text(language, key, **(params or {}))
        outgoing = Outgoing(
            conversation.channel,
            conversation.address,
            text,
            kind,
            choices,
            dict(template_variables or {}),
        )
        effect = await stage_message(conn, conversation.id, outgoing, sealer=self.sealer, now=now)
        await stage_outcome(conn, Outcome(effects=[effect]), now)
        return True
