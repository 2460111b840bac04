"""Ops are told when renter turns keep failing, even while the database cannot write.

A turn that fails stores nothing, an alert included, so a full disk or a lost database would
fail silently. When ``after`` turns in a row have failed, this process sends the alert straight
to the ops chat (the Bot API, not the outbox), at most once per ``quiet`` period. The first turn
that succeeds afterwards records the episode as an alert, resolved, on the message already sent,
which is then edited to say so. Without an ops chat the alert is logged only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from flows.clock import Clock
from flows.handoff import OPS_LANGUAGE
from flows.i18n import Translator
from flows.messages import InboundMessage
from storage.journal import record_past_alert
from storage.kinds import AlertKind

if TYPE_CHECKING:  # Telegram's library is loaded only where Telegram is configured
    from bot.ops.chat import OpsChat

log = logging.getLogger(__name__)

KIND = AlertKind.TURNS_FAILING
MESSAGE_KEY = "ops.turns_failing"


class FailingTurns:
    def __init__(
        self,
        clock: Clock,
        translator: Translator,
        chat: OpsChat | None,
        chat_id: int | None,
        *,
        after: int = 3,
        quiet: timedelta = timedelta(minutes=15),
    ) -> None:
        self.clock = clock
        self.translator = translator
        self.chat = chat if chat_id is not None else None
        self.chat_id = chat_id
        self.after = after
        self.quiet = quiet
        self._in_a_row = 0
        self._since: datetime | None = None
        self._error = ""
        self._alerted_at: datetime | None = None
        #: The alert sent while the database could not record it, until it is recorded.
        self._unrecorded: dict[str, Any] | None = None
        self._message_id: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def failed(self, message: InboundMessage, err: Exception) -> None:
        now = self.clock.now()
        if self._in_a_row == 0:
            self._since = now
        self._in_a_row += 1
        self._error = f"{type(err).__name__}: {err}"[:200]
        log.warning("a %s turn failed: %s", message.channel, type(err).__name__)
        if self._in_a_row < self.after:
            return
        if self._alerted_at is not None and now - self._alerted_at < self.quiet:
            return
        self._alerted_at = now
        since = self._since or now
        params: dict[str, Any] = {
            "count": self._in_a_row,
            "since": since.strftime("%Y-%m-%d %H:%M UTC"),
            "error": self._error,
        }
        self._unrecorded = {"raised_at": since, "params": params}
        log.error("renter turns are failing: %d in a row since %s", self._in_a_row, since)
        self._spawn(self._tell(params))

    def succeeded(self) -> None:
        """A turn went through: the database takes writes again (cheap when nothing failed)."""
        if self._in_a_row == 0 and self._unrecorded is None:
            return
        self._in_a_row = 0
        self._alerted_at = None
        if self._unrecorded is not None:
            unrecorded, self._unrecorded = self._unrecorded, None
            self._spawn(self._record(unrecorded))

    async def wait(self) -> None:
        """Until the messages being sent or recorded now are done (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tell(self, params: dict[str, Any]) -> None:
        if self.chat is None or self.chat_id is None:
            return
        text = "⚠️ " + self.translator.text(OPS_LANGUAGE, MESSAGE_KEY, **params)
        try:
            self._message_id = await self.chat.send(self.chat_id, text)
        except Exception as err:
            log.error("the ops chat could not be told that turns are failing: %s", err)

    async def _record(self, unrecorded: dict[str, Any]) -> None:
        try:
            await record_past_alert(
                raised_at=unrecorded["raised_at"],
                now=self.clock.now(),
                kind=KIND,
                group_key=KIND,
                message_key=MESSAGE_KEY,
                params=unrecorded["params"],
                telegram_message_id=self._message_id,
                by="keyturn",
            )
        except Exception as err:
            log.warning("the failing turns could not be recorded yet: %s", type(err).__name__)
            self._unrecorded = unrecorded
            return
        self._message_id = None
