"""Telegram glue for the operators: commands, alert buttons and forum-topic messages, in the ops
group and in staff members' private chats with the bot.

``OpsUpdates`` is offered every update before the renter path (``setup_telegram(handlers=...)``):
it takes everything in the ops group, ops buttons anywhere, and ops commands in private chats
(a renter's ``/help`` goes on to the renter dialog). The logic, role checks and changes are
``flows.ops.OpsDesk``'s; this module parses, runs each command in its own unit of work (the ops
bot is the desk's runner: what the command wrote and the Outcome it answers with commit together),
and delivers the answer once committed.

Telegram sends an update again until it gets a 2xx (a worker that died after the commit, a
failure while answering): the update's id is claimed in the command's unit of work, so a command
runs once however often its update arrives (no second unlock, relay, extension or staff code).

For topics the group must be a forum and the bot an admin allowed to manage topics; an admin bot
also sees plain messages in the group (privacy mode hides them from other bots).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType
from tortoise.exceptions import IntegrityError

from bot.channels import ChannelError
from bot.ops.chat import OpsChat
from bot.transports.telegram import MEDIA_SCHEME
from flows.handoff import Handoff
from flows.messages import Media
from flows.ops import Context, DepositClaim, OpsAnswer, OpsDesk, PositionAsked
from flows.staging import run_unit, stage_outcome
from storage.conversations import claim_message
from storage.models import ProcessedWebhook
from storage.uow import UnitOfWork, unit_of_work

log = logging.getLogger(__name__)

CALLBACK_PREFIX = "ops:"
#: Whose update ids the ops bot claims (the renter path claims its own as ``msg:telegram``).
OPS_UPDATES = "telegram-ops"
_Answer = TypeVar("_Answer", bound=OpsAnswer | None)


def parse_command(text: str) -> tuple[str, list[str]] | None:
    """``/extend@keyturn_bot KX3 2h`` → ``("extend", ["KX3", "2h"])``; None if not a command."""
    if not text.startswith("/"):
        return None
    first, *args = text.split()
    name = first[1:].split("@", 1)[0].lower()
    if not name:
        return None
    return name, args


class _Seen(Exception):
    """The update was handled before: Telegram delivered it again."""


class OpsUpdates:
    def __init__(
        self, desk: OpsDesk, chat: OpsChat, handoff: Handoff, ops_chat_id: int | None
    ) -> None:
        self.desk = desk
        self.chat = chat
        self.handoff = handoff
        self.ops_chat_id = ops_chat_id

    async def __call__(self, update: Update) -> bool:
        try:
            return await self._take(update)
        except _Seen:
            log.info("ops update %s was handled before; dropped", update.update_id)
            return True

    async def _take(self, update: Update) -> bool:
        seen = update.update_id
        if update.callback_query is not None:
            return await self._button(update)
        message = update.message or update.edited_message
        if message is None:
            return False
        in_ops = self.ops_chat_id is not None and message.chat.id == self.ops_chat_id
        if in_ops:
            if update.message is not None:
                await self._in_ops_group(message, seen)
            return True
        if message.chat.type != ChatType.PRIVATE or update.message is None:
            return False
        user = message.from_user
        if user is not None and await self._answered_prompt(message, user.id, seen):
            return True
        parsed = parse_command(message.text or "")
        if parsed is None or user is None or not self.desk.is_command(parsed[0]):
            return False
        if parsed[0] == "help" and await self.desk.staff(user.id) is None:
            return False  # a renter asking the bot for help
        answer = await self._run(
            seen, lambda conn: self.desk.run(conn, user.id, parsed[0], parsed[1])
        )
        await self._deliver(answer, message.chat.id, None, user.id)
        return True

    async def _in_ops_group(self, message: Message, seen: int) -> None:
        user = message.from_user
        if user is None or user.is_bot:
            return
        thread = message.message_thread_id if message.is_topic_message else None
        if await self._answered_prompt(message, user.id, seen, thread):
            return
        conversation = await self.handoff.by_thread(thread) if thread is not None else None
        parsed = parse_command(message.text or "")
        if parsed is not None:
            context = Context(conversation.id if conversation else None)
            answer = await self._run(
                seen, lambda conn: self.desk.run(conn, user.id, parsed[0], parsed[1], context)
            )
            await self._deliver(answer, message.chat.id, thread, user.id)
            return
        if conversation is None:
            return
        media: tuple[Media, ...] = ()
        if message.photo:  # sizes, the largest last
            media = (Media(MEDIA_SCHEME + message.photo[-1].file_id, "image/jpeg"),)
        elif message.effective_attachment is not None:
            answer = OpsAnswer([self.desk.t("ops.only_text_and_photos")])
            await self._deliver(answer, message.chat.id, thread, user.id)
            return
        if message.text or message.caption or media:
            text = message.text or message.caption or ""
            answer = await self._run(
                seen,
                lambda conn: self.desk.say_in_topic(conn, user.id, conversation.id, text, media),
            )
            if answer.lines:
                await self._deliver(answer, message.chat.id, thread, user.id)

    async def _answered_prompt(
        self, message: Message, user_id: int, seen: int, thread: int | None = None
    ) -> bool:
        """A reply to one of the bot's prompts (a rejection's reason): answered here."""
        prompt = message.reply_to_message
        if prompt is None or prompt.from_user is None or message.text is None:
            return False
        if prompt.from_user.id != self.chat.channel.bot.id or not prompt.text:
            return False
        # The bot's prompts name the member they ask; relayed renter text names nobody, so a
        # renter cannot write something that reads like a prompt and have it answered.
        asked = any(
            entity.type == MessageEntity.TEXT_MENTION
            and entity.offset == 0
            and entity.user is not None
            and entity.user.id == user_id
            for entity in prompt.entities
        )
        if not asked:
            return False
        prompt_text, text = prompt.text, message.text
        answer = await self._run(
            seen, lambda conn: self.desk.answer_prompt(conn, user_id, prompt_text, text)
        )
        if answer is None:
            return False
        await self._deliver(answer, message.chat.id, thread, user_id)
        return True

    async def _button(self, update: Update) -> bool:
        query = update.callback_query
        assert query is not None
        data = query.data or ""
        if not data.startswith(CALLBACK_PREFIX):
            return False
        action, _, ident = data.removeprefix(CALLBACK_PREFIX).partition(":")
        user_id = query.from_user.id
        answer = await self._run(
            update.update_id, lambda conn: self.desk.press(conn, user_id, action, ident)
        )
        await self.chat.answer(query.id)
        origin = query.message
        if origin is None:
            chat_id, thread = query.from_user.id, None
        else:
            chat_id = origin.chat.id
            thread = origin.message_thread_id if isinstance(origin, Message) else None
        await self._deliver(answer, chat_id, thread, query.from_user.id)
        return True

    async def _run(
        self, update: int, command: Callable[[UnitOfWork], Awaitable[_Answer]]
    ) -> _Answer:
        """The ops bot's command runner: one unit of work per command, committing what the
        command wrote, the Outcome its answer carries and the claim of its ``update`` id; the
        answer is delivered after. Raises ``_Seen`` for an update claimed before."""
        update_id = str(update)
        now = self.desk.clock.now()
        try:
            async with unit_of_work() as conn:
                answer = await command(conn)
                if answer is not None:
                    await stage_outcome(conn, answer.outcome, now)
                    # Last, so a prompt left unanswered (None) claims nothing.
                    await claim_message(conn, OPS_UPDATES, update_id, at=now)
        except IntegrityError:
            if await ProcessedWebhook.exists(provider=OPS_UPDATES, event_id=update_id):
                raise _Seen from None
            raise
        return answer

    async def _deliver(
        self, answer: OpsAnswer, chat_id: int, thread: int | None, user_id: int
    ) -> None:
        lines = list(answer.lines)
        if answer.claim is not None:
            lines += await self._claim(answer.claim)
        if answer.position is not None:
            lines += await self._position(answer.position)
        if answer.private:
            lines += await self._privately(answer.private, chat_id, user_id)
        if answer.taken is not None:
            lines = await self._topic(answer, chat_id, thread)
        if answer.asks is not None and lines:
            prompt, *lines = lines
            asks = answer.asks
            try:
                await self.chat.ask(
                    chat_id,
                    prompt,
                    who=(user_id, asks.who),
                    placeholder=asks.placeholder,
                    thread=thread,
                )
            except ChannelError as err:
                log.warning("a prompt to the operators was not delivered: %s", err)
        if lines:
            await self._send(chat_id, "\n".join(lines), thread)

    async def _claim(self, claim: DepositClaim) -> list[str]:
        """A deposit claim the command committed to: made through the journey's claim flow
        outside any transaction, then recorded (and the renter told) in a unit of work."""
        lines, record = await self.desk.claim(claim)
        if record is None:
            return lines
        try:
            await run_unit(record, self.desk.clock.now())
        except LookupError:
            return [self.desk.t("ops.claim_meanwhile", booking=claim.reference)]
        return lines

    async def _position(self, asked: PositionAsked) -> list[str]:
        """A position the command asked for: read from Traccar outside any transaction, then
        who looked recorded in a unit of work."""
        lines, record = await self.desk.where_now(asked)
        if record is not None:
            await run_unit(record, self.desk.clock.now())
        return lines

    async def _privately(self, private: list[str], chat_id: int, user_id: int) -> list[str]:
        """Lines only the member may see; in the group, a note that they went privately."""
        if chat_id == user_id:
            return private
        try:
            await self.chat.send(user_id, "\n".join(private))
        except ChannelError:
            return [self.desk.t("ops.start_private_chat")]
        return [self.desk.t("ops.sent_privately")]

    async def _topic(self, answer: OpsAnswer, chat_id: int, thread: int | None) -> list[str]:
        """A conversation just taken over: its transcript in its own forum topic where the ops
        group allows them; else here, with how to answer."""
        taken = answer.taken
        assert taken is not None
        topic = taken.thread_id
        if topic is None and self.ops_chat_id is not None:
            name = self.desk.t("ops.topic_name", who=taken.who, channel=taken.channel)
            try:
                topic = await self.chat.create_topic(self.ops_chat_id, name)
            except ChannelError as err:
                # The take-over is committed: answered here, with /reply, not left to a resend.
                log.warning("no forum topic for a conversation taken over: %s", err)
            if topic is not None:
                async with unit_of_work() as conn:
                    topic = await self.handoff.set_thread(conn, taken.conversation_id, topic)
        if topic is None or self.ops_chat_id is None:
            return [*answer.lines, self.desk.t("ops.reply_hint", ident=taken.conversation_id)]
        await self._send(
            self.ops_chat_id, "\n".join([*answer.lines, self.desk.t("ops.topic_hint")]), topic
        )
        if chat_id == self.ops_chat_id and thread == topic:
            return []
        return [self.desk.t("ops.topic_opened", who=taken.who)]

    async def _send(self, chat_id: int, text: str, thread: int | None) -> None:
        try:
            await self.chat.send(chat_id, text, thread=thread)
        except ChannelError as err:
            log.warning("an answer to the operators was not delivered: %s", err)
