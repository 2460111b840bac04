"""Shows operator alerts in the ops group (``TELEGRAM_OPS_CHAT_ID``): the ``ops.alert`` executor.

An alert is sent once, with the buttons that act on it, and its Telegram message id is kept on
the alert (recorded with the effect's completion); every later change (more occurrences,
resolved) edits that message, so a storm of one group is one message that updates. An ID waiting
for review comes with its document, sent decrypted and never logged: a photo as a photo, a PDF
(or an image Telegram cannot show as a photo) as a document; once however often the attempt is
retried, and deleted when the ID is decided. Effects of one alert run one
at a time in this process.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from tortoise.backends.base.client import BaseDBAsyncClient

from flows.effects import FollowUp, Outcome
from flows.handoff import OPS_LANGUAGE
from flows.i18n import Translator
from flows.media_types import HEIC, JPEG, PDF, PNG, WEBP
from storage.journal import ALERT_EFFECT
from storage.kinds import AlertKind
from storage.models import IdentityCheck, OpsAlert, OutboxEffect, StaffMember
from storage.sealing import Sealer
from storage.uow import unit_of_work

if TYPE_CHECKING:  # Telegram's library is loaded only where Telegram is configured
    from bot.ops.chat import Buttons, OpsChat

log = logging.getLogger(__name__)

RETRYABLE = frozenset({AlertKind.EFFECT_FAILING, AlertKind.CODE_NOT_SET, AlertKind.CODE_REJECTED})
#: What ``sendPhoto`` takes; any other ID (a PDF, a HEIC photo) goes as a document.
PHOTO_TYPES = frozenset({JPEG, PNG, WEBP})
FILE_EXTENSIONS = {PDF: "pdf", HEIC: "heic"}


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

    async def __call__(self, effect: OutboxEffect) -> FollowUp | None:
        if self.chat is None or self.chat_id is None:
            return None
        alert_id = int(str(effect.payload["alert"]))
        lock = self._locks.setdefault(alert_id, asyncio.Lock())
        async with lock:
            return await self._show(self.chat, self.chat_id, alert_id)

    async def _show(self, chat: OpsChat, chat_id: int, alert_id: int) -> FollowUp | None:
        alert = await OpsAlert.get_or_none(id=alert_id)
        if alert is None or _about_this_executor(alert):
            return None  # the ops chat itself is failing: nothing to tell it
        text = await self.render(alert)
        buttons = self.buttons(alert)
        sent: int | None = None
        if alert.telegram_message_id is None:
            if (
                alert.kind == AlertKind.ID_REVIEW
                and alert.resolved_at is None
                and "photo_message_id" not in alert.params
            ):
                # Not again on a retry: the photo an earlier attempt sent is the one that is
                # deleted when the ID is decided.
                await self._send_document(chat, chat_id, alert)
            sent = await chat.send(chat_id, text, buttons)
        elif self._shown.get(alert.id) != (text, buttons):
            await chat.edit(chat_id, alert.telegram_message_id, text, buttons)
        photo = alert.params.get("photo_message_id")
        deleted = alert.resolved_at is not None and photo is not None
        if deleted:
            # The ID has been decided: its image leaves the ops group as it left the database.
            await chat.delete(chat_id, int(str(photo)))
        self._shown[alert.id] = (text, buttons)
        if alert.resolved_at is not None:
            self._locks.pop(alert.id, None)
        if sent is None and not deleted:
            return None
        return _shown_as(alert.id, sent, photo_deleted=deleted)

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
        """Send the ID's document and record its message id at once, in its own unit of work:
        the rest of the attempt may fail after it, and the document must still be found to
        delete."""
        check = await IdentityCheck.get_or_none(id=int(str(alert.params.get("check", 0))))
        if check is None or check.document_encrypted is None:
            return
        document = self.sealer.open_bytes(check.document_encrypted)
        caption = self.t(
            "ops.id_photo_caption", booking=alert.params.get("booking", "-"), check=check.id
        )
        kind = check.document_content_type
        if kind in PHOTO_TYPES:
            message_id = await chat.send_photo(chat_id, document, caption)
        else:
            name = f"id-{check.id}.{FILE_EXTENSIONS.get(kind, 'bin')}"
            message_id = await chat.send_document(chat_id, document, name, caption)
        async with unit_of_work() as conn:
            row = await OpsAlert.filter(id=alert.id).using_db(conn).select_for_update().first()
            if row is None:
                return
            params = {**row.params, "photo_message_id": message_id}
            await OpsAlert.filter(id=alert.id).using_db(conn).update(params=params)
        alert.params = params


def _shown_as(alert_id: int, sent: int | None, *, photo_deleted: bool) -> FollowUp:
    """What showing the alert did, recorded with the effect's completion: the message that
    shows it (kept where none is yet), and that its ID photo is gone from the group."""

    async def record(conn: BaseDBAsyncClient) -> Outcome:
        if sent is not None:
            await (
                OpsAlert.filter(id=alert_id, telegram_message_id__isnull=True)
                .using_db(conn)
                .update(telegram_message_id=sent)
            )
        if photo_deleted:
            row = await OpsAlert.filter(id=alert_id).using_db(conn).select_for_update().first()
            if row is not None and "photo_message_id" in row.params:
                params = {k: v for k, v in row.params.items() if k != "photo_message_id"}
                await OpsAlert.filter(id=alert_id).using_db(conn).update(params=params)
        return Outcome()

    return record


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
