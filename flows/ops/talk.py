"""Talking with renters: /takeover, /release, /reply and messages in a conversation's topic."""

from __future__ import annotations

from flows.effects import Outcome
from flows.handoff import HandoffRefused
from flows.messages import Media
from flows.ops.answers import Context, OpsAnswer, Permission, Refused
from flows.ops.base import DeskBase, actor_of
from storage.models import Conversation, StaffMember
from storage.uow import UnitOfWork


class TalkCommands(DeskBase):
    async def _conversation(self, staff: StaffMember, ident: str) -> Conversation:
        conversation = await self.handoff.find(ident)
        if conversation is None:
            raise Refused("ops.not_found", what=ident)
        await self._renter_in_scope(staff, conversation.renter_id)
        return conversation

    async def _takeover(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        conversation = await self._conversation(staff, args[0])
        taken, outcome = await self.handoff.take_over(conn, conversation.id, staff)
        lines = [self.t("ops.taken_over", who=taken.who, channel=taken.channel)]
        lines += list(taken.transcript) or [self.t("ops.transcript_empty")]
        return OpsAnswer(lines, taken=taken, outcome=outcome)

    async def _release(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        if args:
            conversations = [await self._conversation(staff, args[0])]
        elif ctx.conversation_id is not None:
            conversations = [await Conversation.get(id=ctx.conversation_id)]
        else:
            conversations = await self.handoff.taken_by(staff)
        lines, outcome = [], Outcome()
        for conversation in conversations:
            mine = conversation.agent_id == staff.telegram_user_id
            if not mine and not self.may(staff, Permission.MANAGE):
                raise HandoffRefused("ops.not_yours", who=await self.handoff.who(conversation))
            released = await self.handoff.release(
                conn, conversation.id, by=actor_of(staff), tell_staff=False
            )
            if released is not None:
                outcome += released
                lines.append(self.t("ops.released", who=await self.handoff.who(conversation)))
        return OpsAnswer(lines or [self.t("ops.not_taken")], outcome=outcome)

    async def _reply(
        self, conn: UnitOfWork, staff: StaffMember, args: list[str], ctx: Context
    ) -> OpsAnswer:
        conversation = await self._conversation(staff, args[0])
        outcome = await self.handoff.staff_says(conn, conversation.id, staff, args[1])
        who = await self.handoff.who(conversation)
        return OpsAnswer([self.t("ops.reply_sent", who=who)], outcome=outcome)

    async def say_in_topic(
        self,
        conn: UnitOfWork,
        user_id: int,
        conversation_id: int,
        text: str,
        media: tuple[Media, ...] = (),
    ) -> OpsAnswer:
        """A staff member wrote (or posted a photo) in a conversation's forum topic: it goes to
        the renter."""
        staff = await self.staff(user_id)
        if staff is None or not self.may(staff, Permission.TALK):
            await self._refused(conn, user_id, "topic message", "not allowed to talk to renters")
            return OpsAnswer([self.t("ops.refused", command="reply")])
        try:
            outcome = await self.handoff.staff_says(conn, conversation_id, staff, text, media)
        except HandoffRefused as refused:
            return OpsAnswer([self.t(refused.key, **refused.params)])
        return OpsAnswer(outcome=outcome)
