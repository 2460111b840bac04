"""Shows operator alerts in the ops group (``TELEGRAM_OPS_CHAT_ID``): the ``ops.alert`` executor.

An alert is sent once, with the buttons that act on it, and its Telegram message id is kept on
the alert; every later change (more occurrences, resolved) edits that message, so a storm of one
group is one message that updates. An ID waiting for review comes with its photo, sent from the
decrypted document and never logged. Effects of one alert run one at a time in this process.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from flows.handoff import OPS_LANGUAGE
from flows.i18n import Translator
from storage.journal import ALERT_EFFECT
from storage.kinds import AlertKind
from storage.models import IdentityCheck, OpsAlert, OutboxEffect, StaffMember
from storage.sealing import Sealer

if TYPE_CHECKING:  # Telegram's library is loaded only where Telegram is configured
    from bot.ops.chat import Buttons, OpsChat

log = logging.getLogger(__name__)

RETRYABLE = frozenset({AlertKind.EFFECT_FAILING, AlertKind.CODE_NOT_SET, AlertKind.CODE_REJECTED})


class AlertSender:
    """Executes ``ops.alert`` effects. With ``chat`` None (Telegram or the ops chat not
    configured) it does nothing and the effect is done: the sandbox page lists the alerts."""

    def __init__(
        self,
        chat: OpsChat | None,
        chat_id: int | None,
        translator: Translator,
        sealer: Sealer,
    ) -> None:
        self.chat = chat
        self.chat_id = chat_id
        self.translator = translator
        self.sealer = sealer
        self._locks: dict[int, asyncio.Lock] = {}
        #: What each alert's message shows now, so an unchanged state is not edited again.
        self._shown: dict[int, tuple[str, Buttons]] = {}

    def t(self, key: str, **params: object) -> str:
        return self.translator.text(OPS_LANGUAGE, key, **params)

    async def __call__(self, effect: OutboxEffect) -> None:
        if self.chat is None or self.chat_id is None:
            return
        alert_id = int(str(effect.payload["alert"]))
        lock = self._locks.setdefault(alert_id, asyncio.Lock())
        async with lock:
            await self._show(self.chat, self.chat_id, alert_id)

    async def _show(self, chat: OpsChat, chat_id: int, alert_id: int) -> None:
        alert = await OpsAlert.get_or_none(id=alert_id)
        if alert is None or _about_this_executor(alert):
            return  # the ops chat itself is failing: nothing to tell it
        text = await self.render(alert)
        buttons = self.buttons(alert)
        if alert.telegram_message_id is None:
            if alert.kind == AlertKind.ID_REVIEW and alert.resolved_at is None:
                await self._send_document(chat, chat_id, alert)
            message_id = await chat.send(chat_id, text, buttons)
            await OpsAlert.filter(id=alert.id).update(telegram_message_id=message_id)
        elif self._shown.get(alert.id) != (text, buttons):
            await chat.edit(chat_id, alert.telegram_message_id, text, buttons)
        photo = alert.params.get("photo_message_id")
        if alert.resolved_at is not None and photo is not None:
            # The ID has been decided: its image leaves the ops group as it left the database.
            await chat.delete(chat_id, int(str(photo)))
            params = {k: v for k, v in alert.params.items() if k != "photo_message_id"}
            await OpsAlert.filter(id=alert.id).update(params=params)
        self._shown[alert.id] = (text, buttons)
        if alert.resolved_at is not None:
            self._locks.pop(alert.id, None)

    async def render(self, alert: OpsAlert) -> str:
        try:
            body = self.t(alert.message_key, **dict(alert.params))
        except (KeyError, IndexError):
            body = f"{alert.message_key} {alert.params}"
        lines = [("✅ " if alert.resolved_at else "⚠️ ") + body]
        if alert.occurrences > 1:
            lines.append(
                self.t("ops.alert_repeated", count=alert.occurrences, at=_when(alert.updated_at))
            )
        if alert.resolved_at is not None:
            lines.append(
                self.t(
                    "ops.alert_resolved",
                    at=_when(alert.resolved_at),
                    by=await _name(alert.resolved_by or "?"),
                )
            )
        return "\n".join(lines)

    def buttons(self, alert: OpsAlert) -> Buttons:
        if alert.resolved_at is not None:
            return ()
        resolve = (self.t("ops.button_resolve"), f"ops:resolve:{alert.id}")
        if alert.kind == AlertKind.ID_REVIEW:
            check = alert.params.get("check")
            return (
                (self.t("ops.button_approve"), f"ops:approve:{check}"),
                (self.t("ops.button_reject"), f"ops:reject:{check}"),
            )
        if alert.kind == AlertKind.AGENT_REQUESTED:
            conversation = alert.group_key.partition(":")[2]
            return ((self.t("ops.button_take_over"), f"ops:take:{conversation}"), resolve)
        if alert.kind in RETRYABLE:
            return ((self.t("ops.button_retry"), f"ops:retry:{alert.id}"), resolve)
        return (resolve,)

    async def _send_document(self, chat: OpsChat, chat_id: int, alert: OpsAlert) -> None:
        check = await IdentityCheck.get_or_none(id=int(str(alert.params.get("check", 0))))
        if check is None or check.document_encrypted is None:
            return
        photo = self.sealer.open_bytes(check.document_encrypted)
        caption = self.t(
            "ops.id_photo_caption", booking=alert.params.get("booking", "-"), check=check.id
        )
        message_id = await chat.send_photo(chat_id, photo, caption)
        params = {**alert.params, "photo_message_id": message_id}
        await OpsAlert.filter(id=alert.id).update(params=params)
        alert.params = params


def _about_this_executor(alert: OpsAlert) -> bool:
    return alert.kind == AlertKind.EFFECT_FAILING and alert.params.get("kind") == ALERT_EFFECT


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


async def _name(actor: str) -> str:
    """``staff:<telegram id>`` as the member's name; anything else as it is."""
    kind, _, ident = actor.partition(":")
    if kind == "staff" and ident.isdigit():
        member = await StaffMember.get_or_none(telegram_user_id=int(ident))
        if member is not None:
            return member.name
    return actor
